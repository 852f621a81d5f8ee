//! One compiled rule: its key, its exemptions, its local limiter, and its metric handles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use weir_config::ratelimit::{LimitMode, RateLimitRule, RateLimits, RedisFailure};
use weir_ratelimit::{
    Decision, Granted, LeaseTable, LocalLimiter, LocalMetrics, Quota, RedisBackend, RedisError, Take, monotonic_nanos,
};
use weir_telemetry::{Metrics, RuleMetrics};

use super::carry::{Rebuild, fingerprint};
use super::exempt::Exemption;
use super::fields;
use super::key::{HashSink, KeySpec, RequestView};
use super::report::RuleSettings;

/// Outcome indexes into [`weir_telemetry::RATE_LIMIT_OUTCOMES`].
const ALLOWED: usize = 0;
const LIMITED: usize = 1;
const EXEMPT: usize = 2;
const NO_KEY: usize = 3;

/// A rule ready to decide requests.
pub struct Rule {
    pub name: Arc<str>,
    key: KeySpec,
    exemption: Exemption,
    /// Shared with the next snapshot when a reload leaves this rule unchanged.
    pub(super) limiter: Arc<LocalLimiter>,
    pub response_headers: bool,
    /// This rule's `RateLimit-Policy` member.
    pub policy: HeaderValue,
    pub(super) global: Option<Global>,
    pub(super) metrics: RuleMetrics,
    /// What the admin API shows of the rule's settings.
    pub(super) settings: RuleSettings,
}

/// Where a global rule decides, and what it does when it cannot.
pub(super) struct Global {
    pub(super) client: RedisBackend,
    /// `weir:rl:{<scope>/<rule>/`: the key's parts and a closing `}` follow, so the whole key is
    /// its own hash tag and keys spread over a cluster's slots.
    prefix: Box<[u8]>,
    timeout: Duration,
    pub(super) on_error: RedisFailure,
    /// The rule's leases, when it takes them (`lease` above 1).
    leases: Option<LeaseTable>,
}

impl Global {
    /// Requests one round trip takes (1: the rule does not lease).
    pub(super) fn lease_size(&self) -> u32 {
        self.leases.as_ref().map_or(1, LeaseTable::size)
    }

    /// Keys holding a lease now.
    pub(super) fn leased_keys(&self) -> usize {
        self.leases.as_ref().map_or(0, LeaseTable::len)
    }
}

/// What a global rule's lease table settled for a request.
enum Leased {
    Decided(Decision),
    /// A key part is missing: the rule does not apply.
    NoKey,
    /// This request fetches the key's next lease (its hash).
    Fetch(u64),
    /// A lease on its way did not come in time: this request asks Redis for itself alone.
    AskAlone,
}

/// What a fail-closed rule tells a client to wait while Redis is unreachable.
const CLOSED_RETRY: u64 = 1_000_000_000;

impl Rule {
    /// Compiles a rule applied in `scope` (a route's name, or `global`); `template` is the route's
    /// path template, for path keys. The local limiter comes from `limiters`, carried over when
    /// the rule is unchanged.
    pub fn build(
        rule: &RateLimitRule,
        limits: &RateLimits,
        template: Option<&str>,
        scope: &str,
        redis: Option<&RedisBackend>,
        metrics: &Metrics,
        limiters: &mut Rebuild<'_>,
    ) -> Rule {
        let name: Arc<str> = rule.display_name().into();
        let metrics = metrics.rate_limit_rule(scope, &name);
        let period = u64::try_from(rule.rate.period.as_nanos()).unwrap_or(u64::MAX);
        let quota = Quota::new(rule.rate.count, period, rule.effective_burst());
        let local_metrics = LocalMetrics {
            keys: metrics.keys.clone(),
            capacity: metrics.capacity.clone(),
            memory_bytes: metrics.memory_bytes.clone(),
            evictions: metrics.evictions.clone(),
            overflowed: metrics.overflowed.clone(),
        };
        let max_keys = rule.max_keys.unwrap_or(limits.max_keys);
        let limiter = limiters.limiter(scope, &name, fingerprint(rule, max_keys, template), || {
            LocalLimiter::new(quota, max_keys, local_metrics)
        });
        let global = match (rule.mode, redis, &limits.redis) {
            (LimitMode::Global, Some(client), Some(settings)) => Some(Global {
                client: client.clone(),
                prefix: format!("weir:rl:{{{scope}/{name}/").into_bytes().into(),
                timeout: settings.timeout.0,
                on_error: rule.redis_failure(),
                leases: rule.lease.filter(|&size| size > 1).map(|size| LeaseTable::new(size, max_keys)),
            }),
            _ => None,
        };
        Rule {
            settings: RuleSettings::of(rule, scope),
            global,
            policy: fields::policy(&name, &rule.rate),
            name,
            key: KeySpec::new(&rule.key, template),
            exemption: Exemption::new(&rule.exempt),
            limiter,
            response_headers: rule.response_headers,
            metrics,
        }
    }

    /// Decides one request; `None` when the rule does not apply (exempt, or a key part missing).
    pub async fn decide(&self, view: &RequestView<'_>) -> Option<Decision> {
        let Some(global) = &self.global else { return self.decide_here(view) };
        if self.exempt(view) {
            return None;
        }
        let decision = self.decide_globally(global, view).await?;
        Some(self.counted(decision))
    }

    /// Whether the rule decides in this process alone (no Redis), so [`Self::decide_here`] does.
    pub fn is_local(&self) -> bool {
        self.global.is_none()
    }

    /// Decides one request on this process's limiter, without waiting; for a rule that
    /// [`Self::is_local`].
    pub fn decide_here(&self, view: &RequestView<'_>) -> Option<Decision> {
        if self.exempt(view) {
            return None;
        }
        let decision = self.decide_locally(view)?;
        Some(self.counted(decision))
    }

    fn exempt(&self, view: &RequestView<'_>) -> bool {
        let exempt = self.exemption.applies(view);
        if exempt {
            self.metrics.decided(EXEMPT);
        }
        exempt
    }

    fn counted(&self, decision: Decision) -> Decision {
        self.metrics.decided(if decision.allowed { ALLOWED } else { LIMITED });
        decision
    }

    fn decide_locally(&self, view: &RequestView<'_>) -> Option<Decision> {
        let mut sink = HashSink(self.limiter.key_hasher());
        if !self.key.build(view, &mut sink) {
            self.metrics.decided(NO_KEY);
            return None;
        }
        Some(self.limiter.check(std::hash::Hasher::finish(&sink.0), monotonic_nanos()))
    }

    /// From the key's lease when it holds one, else one round trip to Redis within the timeout
    /// (taking a new lease when the rule leases); when that fails, the local limiter (fail open) or
    /// a refusal (fail closed).
    async fn decide_globally(&self, global: &Global, view: &RequestView<'_>) -> Option<Decision> {
        let mut fetching = None;
        if let Some(leases) = &global.leases {
            match self.consult_lease(global, leases, view).await {
                Leased::Decided(decision) => return Some(decision),
                Leased::NoKey => return None,
                Leased::Fetch(hash) => fetching = Some((leases, hash)),
                Leased::AskAlone => {}
            }
        }
        let key = self.redis_key(global, view)?;
        let wanted = fetching.map_or(1, |(leases, _)| leases.size());
        let error = match self.ask_redis(global, &key, wanted).await {
            Ok(granted) => {
                return Some(match fetching {
                    Some((leases, hash)) => leases.keep(hash, granted, monotonic_nanos()),
                    None => granted.decision,
                });
            }
            Err(error) => error,
        };
        if let Some((leases, hash)) = fetching {
            leases.abandon(hash);
        }
        self.metrics.redis_errors.inc();
        tracing::debug!(rule = &*self.name, %error, "global rate limit undecided");
        Some(match global.on_error {
            RedisFailure::Local => self.limiter.check(self.limiter.hash_key(&key[..]), monotonic_nanos()),
            RedisFailure::Refuse => {
                Decision { allowed: false, remaining: 0, retry_after: CLOSED_RETRY, reset_after: CLOSED_RETRY }
            }
        })
    }

    /// Decides from the key's lease or last refusal when they allow, waiting for a lease on its way
    /// (as long as this request would wait for Redis itself); otherwise says how to ask Redis. A
    /// leased key is looked up by its hash, so a request decided from memory builds no key.
    async fn consult_lease(&self, global: &Global, leases: &LeaseTable, view: &RequestView<'_>) -> Leased {
        let mut sink = HashSink(self.limiter.key_hasher());
        if !self.key.build(view, &mut sink) {
            self.metrics.decided(NO_KEY);
            return Leased::NoKey;
        }
        let hash = std::hash::Hasher::finish(&sink.0);
        // Read only if the request has to wait: most are decided from memory at once.
        let mut deadline = None;
        loop {
            let fetched = leases.fetched(hash).notified();
            tokio::pin!(fetched);
            fetched.as_mut().enable();
            match leases.take(hash, monotonic_nanos()) {
                Take::Decided { decision, refill } => {
                    if refill {
                        self.refill(global, leases, hash, view).await;
                    }
                    return Leased::Decided(decision);
                }
                Take::Fetch => return Leased::Fetch(hash),
                Take::Wait => {
                    let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + global.timeout);
                    if tokio::time::timeout_at(deadline, fetched).await.is_err() {
                        return Leased::AskAlone;
                    }
                }
            }
        }
    }

    /// The key's Redis name, `weir:rl:{<scope>/<rule>/<key>}`; `None` (counted) when a part is missing.
    fn redis_key(&self, global: &Global, view: &RequestView<'_>) -> Option<Vec<u8>> {
        let mut key = global.prefix.to_vec();
        if !self.key.build(view, &mut key) {
            self.metrics.decided(NO_KEY);
            return None;
        }
        key.push(b'}');
        Some(key)
    }

    /// One round trip taking up to `wanted` requests' worth of `key`'s bucket, timed.
    async fn ask_redis(&self, global: &Global, key: &[u8], wanted: u32) -> Result<Granted, RedisError> {
        let started = Instant::now();
        let decided = global.client.decide(key, self.limiter.quota(), wanted);
        let granted = tokio::time::timeout(global.timeout, decided).await.map_err(|_| RedisError::Timeout)??;
        self.metrics.redis_latency.observe(started.elapsed());
        Ok(granted)
    }

    /// Fetches a busy key's next lease before its current one runs out. The request asking was
    /// served from the lease already, so a failure only ends the fetch (and is counted).
    async fn refill(&self, global: &Global, leases: &LeaseTable, hash: u64, view: &RequestView<'_>) {
        let Some(key) = self.redis_key(global, view) else { return leases.abandon(hash) };
        match self.ask_redis(global, &key, leases.size()).await {
            Ok(granted) => leases.refill(hash, granted, monotonic_nanos()),
            Err(error) => {
                leases.abandon(hash);
                self.metrics.redis_errors.inc();
                tracing::debug!(rule = &*self.name, %error, "lease not refilled");
            }
        }
    }
}
