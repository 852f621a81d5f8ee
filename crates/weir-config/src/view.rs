//! The configuration as the admin API shows it: the file's content as JSON, with every value under a
//! key that names a secret (a word `token`, `password`, `secret` or `credentials`, or a name ending
//! in `api_key` or `private_key`) replaced by
//! `"[redacted]"`. Built from the source text, so a section added later is shown (and its secrets
//! hidden) without code here knowing about it.

use serde_json::Value;

use crate::load::Format;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// The source text of a configuration, parsed again into JSON with secrets redacted. The text
/// already passed validation, so parsing succeeds; `Value::Null` is returned if it somehow does not.
pub fn redacted_json(text: &str, format: Format) -> Value {
    let parsed = match format {
        Format::Yaml => serde_saphyr::from_str::<Value>(text).ok(),
        Format::Toml => toml::from_str::<Value>(text).ok(),
    };
    let mut value = parsed.unwrap_or(Value::Null);
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if names_secret(key) {
                    *inner = Value::String(REDACTED.to_string());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `token`, `api_token`, `password`, `client_secret`, `api_key`, `private_key`. A bare `key` is not
/// a secret: a rate limit's `key` names what it counts by.
fn names_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    key.ends_with("api_key")
        || key.ends_with("private_key")
        || key.split('_').any(|word| matches!(word, "token" | "password" | "secret" | "credentials"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_in_both_formats() {
        let yaml = "admin: { address: \"127.0.0.1:9901\", token: hunter2hunter2hunter2 }\nredis: [{ password: p, url: u }]\nroutes: [{ name: r, timeout: 1s }]\n";
        let value = redacted_json(yaml, Format::Yaml);
        assert_eq!(value["admin"]["token"], REDACTED);
        assert_eq!(value["admin"]["address"], "127.0.0.1:9901");
        assert_eq!(value["redis"][0]["password"], REDACTED);
        assert_eq!(value["routes"][0]["timeout"], "1s");
        let toml = "[admin]\ntoken = \"hunter2hunter2hunter2\"\n[tls]\nprivate_key = \"k\"\nkeep_alive = true\nkey = \"client_ip\"\n";
        let value = redacted_json(toml, Format::Toml);
        assert_eq!(
            (value["admin"]["token"].as_str(), value["tls"]["private_key"].as_str()),
            (Some(REDACTED), Some(REDACTED))
        );
        assert_eq!(
            (value["tls"]["keep_alive"].as_bool(), value["tls"]["key"].as_str()),
            (Some(true), Some("client_ip"))
        );
        assert!(!value.to_string().contains("hunter2"));
    }
}
