//! Route matching. Per listener, routes are indexed by host and then by path, so a request is matched
//! without scanning every route.
//!
//! Precedence, most specific first:
//! 1. host: an exact host, then wildcards (longest suffix first), then routes for any host;
//! 2. within a host: exact paths, then templates, then regexes (file order), then prefixes (longest
//!    first; a route without a path condition is the prefix `/`);
//! 3. among routes with the same path: more conditions (method, headers, query) first, then file order.
//!
//! The first route whose conditions all pass wins; when none at one level passes, matching falls
//! through to the next.

mod conditions;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use http::request::Parts;
use weir_config::values::HostPattern;

pub use conditions::{Conditions, ValueTest};

use crate::route::{PathMatcher, Route};

/// Index of a route in the snapshot's route list.
pub type RouteId = u32;

/// Routes ordered by precedence for one path.
type Candidates = Vec<RouteId>;

/// The routes of one listener.
#[derive(Default)]
pub struct Router {
    exact_hosts: HashMap<Box<str>, PathTable>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard_hosts: Vec<(Box<str>, PathTable)>,
    any_host: PathTable,
}

#[derive(Default)]
struct PathTable {
    exact: HashMap<Box<str>, Candidates>,
    templates: Option<matchit::Router<Candidates>>,
    template_list: Vec<(Box<str>, Candidates)>,
    regexes: Candidates,
    /// Longest prefix first.
    prefixes: Vec<(Box<str>, Candidates)>,
}

/// A template that cannot live beside another in one table.
#[derive(Debug, thiserror::Error)]
#[error("route {route}: path template {template:?} conflicts with another route's template: {reason}")]
pub struct TemplateConflict {
    pub route: String,
    pub template: String,
    pub reason: String,
}

impl Router {
    /// Indexes `ids` (routes in file order) of `routes`, each taking the hosts in `hosts[id]`.
    pub fn build(routes: &[Route], hosts: &[Vec<HostPattern>], ids: &[RouteId]) -> Result<Router, TemplateConflict> {
        let mut router = Router::default();
        for &id in ids {
            let patterns = &hosts[id as usize];
            if patterns.is_empty() {
                router.any_host.insert(routes, id);
            }
            for pattern in patterns {
                router.table_for(pattern).insert(routes, id);
            }
        }
        router.wildcard_hosts.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        for table in router.tables_mut() {
            table.finish(routes)?;
        }
        Ok(router)
    }

    fn table_for(&mut self, pattern: &HostPattern) -> &mut PathTable {
        match pattern {
            HostPattern::Any => &mut self.any_host,
            HostPattern::Exact(host) => self.exact_hosts.entry(host.as_str().into()).or_default(),
            HostPattern::Suffix(suffix) => {
                let position = self.wildcard_hosts.iter().position(|(s, _)| **s == **suffix);
                let index = position.unwrap_or_else(|| {
                    self.wildcard_hosts.push((suffix.as_str().into(), PathTable::default()));
                    self.wildcard_hosts.len() - 1
                });
                &mut self.wildcard_hosts[index].1
            }
        }
    }

    fn tables_mut(&mut self) -> impl Iterator<Item = &mut PathTable> {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.iter_mut().map(|(_, t)| t))
            .chain(std::iter::once(&mut self.any_host))
    }

    /// The route for a request. `host` is lower-case and without a port.
    pub fn find(&self, routes: &[Route], host: &str, request: &Parts) -> Option<RouteId> {
        let path = request.uri.path();
        if let Some(table) = self.exact_hosts.get(host)
            && let Some(id) = table.find(routes, path, request)
        {
            return Some(id);
        }
        for (suffix, table) in &self.wildcard_hosts {
            if host.len() > suffix.len()
                && host.ends_with(&**suffix)
                && let Some(id) = table.find(routes, path, request)
            {
                return Some(id);
            }
        }
        self.any_host.find(routes, path, request)
    }
}

impl PathTable {
    fn insert(&mut self, routes: &[Route], id: RouteId) {
        let add = |list: &mut Candidates| list.push(id);
        match &routes[id as usize].path {
            PathMatcher::Exact(path) => add(self.exact.entry(path.clone()).or_default()),
            PathMatcher::Template(template) => add(entry(&mut self.template_list, template)),
            PathMatcher::Regex(_) => add(&mut self.regexes),
            PathMatcher::Prefix(prefix) => add(entry(&mut self.prefixes, prefix)),
        }
    }

    /// Orders candidates and compiles templates once every route is in.
    fn finish(&mut self, routes: &[Route]) -> Result<(), TemplateConflict> {
        let by_precedence = |list: &mut Candidates| {
            list.sort_by_key(|id| (std::cmp::Reverse(routes[*id as usize].conditions.count()), *id));
        };
        self.exact.values_mut().for_each(by_precedence);
        self.prefixes.iter_mut().for_each(|(_, list)| by_precedence(list));
        self.prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        if self.template_list.is_empty() {
            return Ok(());
        }
        let mut templates = matchit::Router::new();
        for (template, list) in &mut self.template_list {
            by_precedence(list);
            templates.insert(normalize_template(template), list.clone()).map_err(|e| TemplateConflict {
                route: routes[list[0] as usize].name.to_string(),
                template: template.to_string(),
                reason: e.to_string(),
            })?;
        }
        self.templates = Some(templates);
        Ok(())
    }

    fn find(&self, routes: &[Route], path: &str, request: &Parts) -> Option<RouteId> {
        let passing = |list: &Candidates| list.iter().copied().find(|id| routes[*id as usize].conditions.pass(request));
        if let Some(id) = self.exact.get(path).and_then(passing) {
            return Some(id);
        }
        if let Some(templates) = &self.templates
            && let Some(id) = templates.at(path).ok().and_then(|m| passing(m.value))
        {
            return Some(id);
        }
        let regex_match = self.regexes.iter().copied().find(|id| {
            let route = &routes[*id as usize];
            matches!(&route.path, PathMatcher::Regex(r) if r.is_match(path)) && route.conditions.pass(request)
        });
        if regex_match.is_some() {
            return regex_match;
        }
        self.prefixes.iter().filter(|(prefix, _)| prefix_matches(prefix, path)).find_map(|(_, list)| passing(list))
    }
}

fn entry<'a>(list: &'a mut Vec<(Box<str>, Candidates)>, key: &str) -> &'a mut Candidates {
    let index = list.iter().position(|(k, _)| &**k == key).unwrap_or_else(|| {
        list.push((key.into(), Vec::new()));
        list.len() - 1
    });
    &mut list[index].1
}

/// Whether `prefix` matches `path` at a segment boundary (a prefix ending in `/` matches as text).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// Parameter names do not matter for matching; renaming them lets `/u/{id}` and `/u/{name}` share an
/// entry instead of conflicting.
fn normalize_template(template: &str) -> String {
    let mut index = 0;
    template
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                index += 1;
                if name.starts_with('*') { format!("{{*p{index}}}") } else { format!("{{p{index}}}") }
            }
            None => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}
