//! Requests a rule never limits: clients in listed networks, or requests carrying a shared secret
//! in a header. The secret is compared in constant time, so response timing does not reveal how much
//! of a guess was right.

use http::HeaderName;
use weir_config::ratelimit::Exempt;
use weir_config::values::Cidr;

use super::key::RequestView;

/// A rule's exemptions, compiled.
pub struct Exemption {
    cidrs: Box<[Cidr]>,
    header: Option<(HeaderName, Box<[u8]>)>,
}

impl Exemption {
    pub fn new(exempt: &Exempt) -> Exemption {
        Exemption {
            cidrs: exempt.cidrs.iter().copied().collect(),
            header: exempt.header.as_ref().map(|h| (h.name.0.clone(), h.secret.as_bytes().into())),
        }
    }

    pub fn applies(&self, view: &RequestView) -> bool {
        if self.cidrs.iter().any(|net| net.contains(view.client_ip)) {
            return true;
        }
        let Some((name, secret)) = &self.header else { return false };
        view.parts.headers.get_all(name).iter().any(|value| constant_time_eq(value.as_bytes(), secret))
    }
}

/// Whether `given` equals `secret`, taking the same time for every `given` of the same length.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut difference = given.len() ^ secret.len();
    for (index, expected) in secret.iter().enumerate() {
        let byte = given.get(index).copied().unwrap_or(0);
        difference |= usize::from(std::hint::black_box(byte ^ expected));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn secrets_match_only_exactly() {
        let secret = b"0123456789abcdef";
        assert!(constant_time_eq(b"0123456789abcdef", secret));
        assert!(!constant_time_eq(b"0123456789abcdeF", secret));
        assert!(!constant_time_eq(b"0123456789abcde", secret));
        assert!(!constant_time_eq(b"0123456789abcdef0", secret));
        assert!(!constant_time_eq(b"", secret));
    }
}
