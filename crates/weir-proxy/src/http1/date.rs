//! The `Date` field of responses: formatted once a second per thread, not per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always this long: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: [0; DATE_LEN] }) };
}

/// Appends the current date as an HTTP date.
pub(crate) fn push_now(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|cached| {
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            }
        }
        out.extend_from_slice(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut out = Vec::new();
        super::push_now(&mut out);
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&out).unwrap()).unwrap();
        let skew = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(skew.as_secs() <= 1, "{skew:?}");
    }
}
