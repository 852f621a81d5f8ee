//! Local limiters carried across reloads. Every snapshot build asks a [`Rebuild`] for its rules'
//! local limiters: a rule applied in the same scope (route name, or `global`), under the same name
//! and with the same definition as in the serving configuration gets the very same limiter back,
//! so the buckets its clients have spent stay spent; a new or changed rule starts with whole
//! buckets. Global (Redis) state lives outside the process and needs no carrying; the local
//! limiter a global rule falls back to is carried like any other.

use std::collections::HashMap;
use std::sync::Arc;

use weir_config::ratelimit::RateLimitRule;
use weir_ratelimit::LocalLimiter;

/// Where a rule applies and what it is called there: `(scope, rule name)`.
type RuleId = (String, String);

/// The local limiters in service, each with a fingerprint of the rule definition it was built from.
#[derive(Default)]
pub struct LimiterRegistry {
    entries: HashMap<RuleId, (String, Arc<LocalLimiter>)>,
}

impl LimiterRegistry {
    /// Starts the registry for a new configuration, taking limiters from this one.
    pub fn rebuild(&self) -> Rebuild<'_> {
        Rebuild { previous: Some(self), next: LimiterRegistry::default() }
    }

    /// How many limiters are registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A registry being built for a new configuration, from the one serving.
pub struct Rebuild<'a> {
    previous: Option<&'a LimiterRegistry>,
    next: LimiterRegistry,
}

impl Rebuild<'static> {
    /// A build with nothing to carry over (the first load, or a one-off snapshot).
    pub fn fresh() -> Rebuild<'static> {
        Rebuild { previous: None, next: LimiterRegistry::default() }
    }
}

impl Rebuild<'_> {
    /// The limiter for a rule: the serving one when its fingerprint is unchanged, else `make()`.
    pub fn limiter(
        &mut self,
        scope: &str,
        name: &str,
        fingerprint: String,
        make: impl FnOnce() -> LocalLimiter,
    ) -> Arc<LocalLimiter> {
        let id = (scope.to_owned(), name.to_owned());
        if self.next.entries.contains_key(&id) {
            // Names are unique within a scope once validated; should two still meet, they must not
            // share buckets, and only the first is carried.
            return Arc::new(make());
        }
        let limiter = match self.previous.and_then(|previous| previous.entries.get(&id)) {
            Some((old, limiter)) if *old == fingerprint => limiter.clone(),
            _ => Arc::new(make()),
        };
        self.next.entries.insert(id, (fingerprint, limiter.clone()));
        limiter
    }

    /// The registry of the limiters handed out, for the next reload to take from.
    pub fn finish(self) -> LimiterRegistry {
        self.next
    }
}

/// Everything a local limiter is built from, as text: equal fingerprints give limiters that count
/// the same keys against the same quota. The route's path template is part of it, since path keys
/// are taken from it.
pub fn fingerprint(rule: &RateLimitRule, max_keys: usize, template: Option<&str>) -> String {
    format!("{rule:?}|max_keys={max_keys}|template={template:?}")
}
