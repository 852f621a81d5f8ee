use super::*;

fn hex(text: &str) -> Bytes {
    let digits: Vec<u8> =
        (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect();
    Bytes::from(digits)
}

fn as_text(field: &Field) -> (String, String) {
    let name = match &field.name {
        Name::Pseudo(Pseudo::Method) => ":method".to_string(),
        Name::Pseudo(Pseudo::Scheme) => ":scheme".to_string(),
        Name::Pseudo(Pseudo::Authority) => ":authority".to_string(),
        Name::Pseudo(Pseudo::Path) => ":path".to_string(),
        Name::Pseudo(Pseudo::Status) => ":status".to_string(),
        Name::Pseudo(Pseudo::Protocol) => ":protocol".to_string(),
        Name::Header(name) => name.to_string(),
        Name::Invalid(_) => "<invalid>".to_string(),
    };
    (name, String::from_utf8(field.value.to_vec()).unwrap())
}

fn decode(decoder: &mut Decoder, block: Bytes) -> Result<Vec<(String, String)>, DecodeError> {
    let mut fields = Vec::new();
    decoder.decode(block, |field| fields.push(as_text(&field)))?;
    Ok(fields)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

/// RFC 7541 appendix C.3 (plain strings) and C.4 (the same requests, Huffman-coded): three requests
/// on one connection, each leaning on the table the ones before filled.
#[test]
fn the_rfc_request_sequences_decode() {
    let sequences = [
        [
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ],
        [
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ],
    ];
    let base = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
    let mut second = base.to_vec();
    second.push(("cache-control", "no-cache"));
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    for blocks in sequences {
        let mut decoder = Decoder::new(4096);
        assert_eq!(decode(&mut decoder, hex(blocks[0])).unwrap(), pairs(&base));
        assert_eq!(decode(&mut decoder, hex(blocks[1])).unwrap(), pairs(&second));
        assert_eq!(decode(&mut decoder, hex(blocks[2])).unwrap(), pairs(&third));
    }
}

#[test]
fn what_the_encoder_writes_decodes_back() {
    let mut block = BytesMut::new();
    encode_status(200, &mut block);
    encode_status(503, &mut block);
    encode_field(&HeaderName::from_static("content-type"), b"text/plain", &mut block);
    encode_field(&HeaderName::from_static("x-request-id"), b"abc", &mut block);
    let long = "v".repeat(300);
    encode_field(&HeaderName::from_static("www-authenticate"), long.as_bytes(), &mut block);
    let fields = decode(&mut Decoder::new(4096), block.freeze()).unwrap();
    let expected = [
        (":status", "200"),
        (":status", "503"),
        ("content-type", "text/plain"),
        ("x-request-id", "abc"),
        ("www-authenticate", long.as_str()),
    ];
    assert_eq!(fields, pairs(&expected));
}

#[test]
fn every_status_encodes_as_itself() {
    for status in 100..=999u16 {
        let mut block = BytesMut::new();
        encode_status(status, &mut block);
        let fields = decode(&mut Decoder::new(0), block.freeze()).unwrap();
        assert_eq!(fields, pairs(&[(":status", &status.to_string())]));
    }
}

#[test]
fn the_static_name_indexes_name_their_entries() {
    for index in 15..=61 {
        let Name::Header(name) = &STATIC[index - 1].name else { panic!("entry {index} is a pseudo-header") };
        if let Some(found) = static_name_index(name.as_str()) {
            assert_eq!(found, index, "{name}");
        }
    }
}

#[test]
fn a_huffman_coded_literal_decodes() {
    // Literal without indexing, new name, both strings Huffman-coded.
    let name = huffman::tests::encode(b"x-trace");
    let value = huffman::tests::encode(b"a b/c%d");
    let mut block = vec![0x00, 0x80 | name.len() as u8];
    block.extend_from_slice(&name);
    block.push(0x80 | value.len() as u8);
    block.extend_from_slice(&value);
    let fields = decode(&mut Decoder::new(4096), Bytes::from(block)).unwrap();
    assert_eq!(fields, pairs(&[("x-trace", "a b/c%d")]));
}

#[test]
fn an_invalid_name_is_decoded_and_indexed_to_keep_the_table_in_step() {
    let mut decoder = Decoder::new(4096);
    // Literal with incremental indexing of "Bad", then an indexed reference to it, then :method GET.
    let block = Bytes::from_static(b"\x40\x03Bad\x01v\xbe\x82");
    let mut names = Vec::new();
    decoder.decode(block, |field| names.push(field.name)).unwrap();
    assert_eq!(names, [Name::Invalid(3), Name::Invalid(3), Name::Pseudo(Pseudo::Method)]);
}

#[test]
fn table_size_updates_are_honoured_at_the_start_of_a_block_only() {
    let mut decoder = Decoder::new(4096);
    // Two updates, then a field.
    assert!(decode(&mut decoder, Bytes::from_static(b"\x20\x3f\xe1\x1f\x82")).is_ok());
    assert_eq!(decode(&mut decoder, Bytes::from_static(b"\x82\x20")), Err(DecodeError::SizeUpdate));
    // 4097 is more than the 4096 announced.
    assert_eq!(decode(&mut decoder, Bytes::from_static(b"\x3f\xe2\x1f")), Err(DecodeError::SizeUpdate));
}

#[test]
fn a_size_update_to_zero_empties_the_table() {
    let mut decoder = Decoder::new(4096);
    decode(&mut decoder, hex("828684410f7777772e6578616d706c652e636f6d")).unwrap();
    assert_eq!(decode(&mut decoder, Bytes::from_static(b"\x20\xbe")), Err(DecodeError::Index));
}

#[test]
fn malformed_blocks_are_refused() {
    let cases: [(&[u8], DecodeError); 7] = [
        (b"\x80", DecodeError::Index),
        (b"\xc0", DecodeError::Index),
        (b"\xff\x80\x80\x80\x80\x01", DecodeError::Integer),
        (b"\xff", DecodeError::Integer),
        (b"\x00\x05ab", DecodeError::StringLength),
        (b"\x00\x01a", DecodeError::StringLength),
        (b"\x00\x81\x00\x00", DecodeError::Huffman),
    ];
    for (block, error) in cases {
        let result = decode(&mut Decoder::new(4096), Bytes::from_static(block));
        assert_eq!(result, Err(error), "{block:x?}");
    }
}

#[test]
fn random_blocks_decode_or_fail_without_panicking() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut decoder = Decoder::new(4096);
    for _ in 0..20_000 {
        let length = (next() % 48) as usize;
        let block: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        if decoder.decode(Bytes::from(block), |_| {}).is_err() {
            decoder = Decoder::new(4096);
        }
    }
}
