//! What a reload would change: routes, upstreams and listeners added, removed and changed, by name.
//! Used by `weir validate --diff`, the admin API's `/reload/diff` and the reload log line, and to
//! refuse reloads that touch what only a restart can change (`admin`, `log`, `tracing`,
//! `server.workers`; listeners apply in process, see [`crate::listeners`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use weir_config::Config;

use super::registry::fingerprint;

/// Names added, removed and changed in one section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SectionDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl SectionDiff {
    /// Compares two sections given as name -> fingerprint.
    fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> SectionDiff {
        let mut diff = SectionDiff::default();
        for (name, print) in new {
            match old.get(name) {
                None => diff.added.push(name.clone()),
                Some(before) if before != print => diff.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = old.keys().filter(|name| !new.contains_key(*name)).cloned().collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The difference between the serving configuration and a candidate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub routes: SectionDiff,
    pub upstreams: SectionDiff,
    pub listeners: SectionDiff,
    /// Listeners whose TLS settings (certificates, ALPN, client verification...) changed: these
    /// apply in process, to new connections.
    pub tls_changed: Vec<String>,
    /// Other sections only a restart applies (`admin`, `log`, `tracing`, `server.workers`) that differ.
    pub restart_only: Vec<&'static str>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let routes = |c: &Config| {
            let named = c.routes.iter().enumerate();
            named.map(|(i, r)| (r.name.clone().unwrap_or_else(|| format!("routes[{i}]")), format!("{r:?}"))).collect()
        };
        let upstreams = |c: &Config| c.upstreams.iter().map(|(n, u)| (n.clone(), fingerprint(u))).collect();
        // A listener's TLS settings apply in place (`tls_changed`); anything else, turning TLS on
        // or off included, replaces the listener. Listeners are known by name, so moving one in
        // the list changes nothing.
        let listeners =
            |c: &Config| c.listeners.iter().map(|l| (l.name.clone(), crate::listeners::fingerprint(l))).collect();
        let tls_changed = new
            .listeners
            .iter()
            .filter(|l| old.listeners.iter().any(|o| o.name == l.name && o.tls.is_some() && o.tls != l.tls))
            .map(|l| l.name.clone())
            .collect();
        let mut restart_only = Vec::new();
        if format!("{:?}", old.admin) != format!("{:?}", new.admin) {
            restart_only.push("admin");
        }
        if format!("{:?}", old.log) != format!("{:?}", new.log) {
            restart_only.push("log");
        }
        if format!("{:?}", old.tracing) != format!("{:?}", new.tracing) {
            restart_only.push("tracing");
        }
        if old.server.workers != new.server.workers {
            restart_only.push("server.workers");
        }
        ConfigDiff {
            routes: SectionDiff::between(&routes(old), &routes(new)),
            upstreams: SectionDiff::between(&upstreams(old), &upstreams(new)),
            listeners: SectionDiff::between(&listeners(old), &listeners(new)),
            tls_changed,
            restart_only,
        }
    }

    /// Why this change cannot be applied in process, if it cannot.
    pub fn needs_restart(&self) -> Option<String> {
        let what: Vec<&str> = self.restart_only.to_vec();
        (!what.is_empty()).then(|| {
            format!("{} changed; these take effect only at a restart or a binary upgrade (SIGUSR2)", what.join(", "))
        })
    }

    /// The diff as a JSON object.
    pub fn json(&self) -> String {
        let mut out = String::from("{");
        for (name, section) in
            [("routes", &self.routes), ("upstreams", &self.upstreams), ("listeners", &self.listeners)]
        {
            let _ = write!(
                out,
                "\"{name}\":{{\"added\":{},\"removed\":{},\"changed\":{}}},",
                json_list(&section.added),
                json_list(&section.removed),
                json_list(&section.changed)
            );
        }
        let restart: Vec<String> = self.restart_only.iter().map(|s| s.to_string()).collect();
        let _ = write!(out, "\"tls_changed\":{},", json_list(&self.tls_changed));
        let _ = write!(out, "\"restart_only\":{}}}", json_list(&restart));
        out
    }
}

impl SectionDiff {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (verb, names) in [("added", &self.added), ("removed", &self.removed), ("changed", &self.changed)] {
            if !names.is_empty() {
                parts.push(format!("{verb}: {}", names.join(" ")));
            }
        }
        if parts.is_empty() { "no change".to_string() } else { parts.join("; ") }
    }
}

/// One line per section, for people.
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "routes: {}", self.routes.summary())?;
        writeln!(f, "upstreams: {}", self.upstreams.summary())?;
        writeln!(f, "listeners: {}", self.listeners.summary())?;
        if !self.tls_changed.is_empty() {
            writeln!(f, "tls: changed: {}", self.tls_changed.join(" "))?;
        }
        if let Some(restart) = self.needs_restart() {
            writeln!(f, "needs a restart: {restart}")?;
        }
        Ok(())
    }
}

fn json_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| json_string(n)).collect();
    format!("[{}]", quoted.join(","))
}

/// A JSON string literal (route names are free text).
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use weir_config::{Format, parse_str};

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  a: {{ endpoints: [\"127.0.0.1:1\"] }}\n  b: {{ endpoints: [\"127.0.0.1:2\"] }}\nroutes:\n  - {{ name: one, upstream: a }}\n{extra}"
        );
        parse_str(&text, Format::Yaml, "test.yaml").unwrap()
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let old = config("  - { name: two, upstream: b }\n  - { name: three, upstream: a }\n");
        let new = config("  - { name: two, upstream: a }\n  - { name: four, upstream: a }\n");
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.routes.added, ["four"]);
        assert_eq!(diff.routes.removed, ["three"]);
        assert_eq!(diff.routes.changed, ["two"]);
        assert!(diff.upstreams.is_empty() && diff.listeners.is_empty());
        assert_eq!(diff.needs_restart(), None);
        assert_eq!(
            diff.json(),
            "{\"routes\":{\"added\":[\"four\"],\"removed\":[\"three\"],\"changed\":[\"two\"]},\"upstreams\":{\"added\":[],\"removed\":[],\"changed\":[]},\"listeners\":{\"added\":[],\"removed\":[],\"changed\":[]},\"tls_changed\":[],\"restart_only\":[]}"
        );
    }

    #[test]
    fn log_changes_need_a_restart_and_listener_changes_do_not() {
        let old = config("");
        let text = "log: { level: debug }\nlisteners: [{ name: public, address: \"127.0.0.1:0\" }, { name: more, address: \"127.0.0.1:0\" }]\n";
        let new = parse_str(text, Format::Yaml, "test.yaml").unwrap();
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.listeners.added, ["more"]);
        assert_eq!(diff.upstreams.removed, ["a", "b"]);
        let restart = diff.needs_restart().unwrap();
        assert!(restart.starts_with("log changed") && !restart.contains("listeners"), "{restart}");
        assert!(diff.to_string().contains("listeners: added: more\n"), "{diff}");
    }

    #[test]
    fn listeners_are_compared_by_name_not_position() {
        let both =
            "listeners: [{ name: public, address: \"127.0.0.1:0\" }, { name: more, address: \"127.0.0.1:9\" }]\n";
        let swapped =
            "listeners: [{ name: more, address: \"127.0.0.1:9\" }, { name: public, address: \"127.0.0.1:0\" }]\n";
        let moved =
            "listeners: [{ name: more, address: \"127.0.0.1:8\" }, { name: public, address: \"127.0.0.1:0\" }]\n";
        let parse = |text| parse_str(text, Format::Yaml, "test.yaml").unwrap();
        assert!(ConfigDiff::between(&parse(both), &parse(swapped)).listeners.is_empty());
        let diff = ConfigDiff::between(&parse(both), &parse(moved));
        assert_eq!(diff.listeners.changed, ["more"]);
        assert_eq!(diff.needs_restart(), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
