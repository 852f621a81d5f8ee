//! The Prometheus text format (version 0.0.4), for scrapers and tools that do not read OpenMetrics
//! (older Prometheus servers, `promtool check metrics`). It is made from the OpenMetrics text: the
//! samples are the same; a counter's `HELP` and `TYPE` name the sample (`x_total`, not `x`), and
//! there is no `UNIT` line and no `# EOF`.

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus text.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let counters: Vec<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 12);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        match descriptor(line) {
            Some((keyword, name, rest)) if counters.contains(&name) => {
                out.push_str(keyword);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Splits `# HELP name rest` or `# TYPE name rest` into its keyword, name and the rest.
fn descriptor(line: &str) -> Option<(&str, &str, &str)> {
    let keyword = ["# HELP ", "# TYPE "].into_iter().find(|k| line.starts_with(k))?;
    let after = &line[keyword.len()..];
    let end = after.find(' ').unwrap_or(after.len());
    Some((keyword, &after[..end], &after[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_the_rest_is_kept() {
        let openmetrics = "# HELP weir_requests Requests answered.\n# TYPE weir_requests counter\n\
            weir_requests_total{route=\"a\"} 3\n# HELP weir_in_flight In flight.\n# TYPE weir_in_flight gauge\n\
            # UNIT weir_in_flight requests\nweir_in_flight 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP weir_requests_total Requests answered.\n# TYPE weir_requests_total counter\n\
             weir_requests_total{route=\"a\"} 3\n# HELP weir_in_flight In flight.\n# TYPE weir_in_flight gauge\n\
             weir_in_flight 1\n"
        );
    }
}
