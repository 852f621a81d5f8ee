//! The complete examples in docs/configuration.md, docs/rate-limiting.md, docs/resilience.md, docs/chaos.md
//! and docs/grpc.md, and the files in examples/, load and validate, so the documentation never shows a
//! file weir would refuse.

use weir_config::{Format, parse_str};

/// The code blocks of one language in a Markdown text.
fn code_blocks<'a>(markdown: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    markdown.split(&fence).skip(1).filter_map(|rest| rest.split_once("```").map(|(block, _)| block)).collect()
}

#[test]
fn complete_examples_in_the_configuration_reference_are_valid() {
    let reference = include_str!("../../../docs/configuration.md");
    let yaml: Vec<_> = code_blocks(reference, "yaml").into_iter().filter(|b| b.contains("listeners:")).collect();
    let toml: Vec<_> = code_blocks(reference, "toml").into_iter().filter(|b| b.contains("[[listeners]]")).collect();
    assert!(!yaml.is_empty() && !toml.is_empty(), "the reference has complete examples");
    for block in yaml {
        parse_str(block, Format::Yaml, "configuration.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    for block in toml {
        parse_str(block, Format::Toml, "configuration.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn example_configurations_are_valid() {
    for (name, text) in [
        ("quickstart.yaml", include_str!("../../../examples/quickstart.yaml")),
        ("upstreams.yaml", include_str!("../../../examples/upstreams.yaml")),
    ] {
        parse_str(text, Format::Yaml, name).unwrap_or_else(|e| panic!("examples/{name}: {e}"));
    }
}

/// Every complete YAML example (one with `listeners:`) in a guide loads; the guide has at least `least`.
fn assert_guide_examples_valid(name: &str, guide: &str, least: usize, why: &str) {
    let yaml: Vec<_> = code_blocks(guide, "yaml").into_iter().filter(|b| b.contains("listeners:")).collect();
    assert!(yaml.len() >= least, "{name}: {why}");
    for block in yaml {
        parse_str(block, Format::Yaml, name).unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn complete_examples_in_the_rate_limiting_guide_are_valid() {
    let guide = include_str!("../../../docs/rate-limiting.md");
    assert_guide_examples_valid("rate-limiting.md", guide, 1, "the guide has a complete example");
}

#[test]
fn complete_examples_in_the_resilience_guide_are_valid() {
    let guide = include_str!("../../../docs/resilience.md");
    assert_guide_examples_valid("resilience.md", guide, 4, "the guide has an example for each mechanism");
}

#[test]
fn complete_examples_in_the_chaos_guide_are_valid() {
    let why = "the guide has an example for faults in the file and in headers";
    assert_guide_examples_valid("chaos.md", include_str!("../../../docs/chaos.md"), 2, why);
}

#[test]
fn complete_examples_in_the_tls_guide_are_valid() {
    let why = "the guide has an example for certificates, SNI and client certificates";
    assert_guide_examples_valid("tls.md", include_str!("../../../docs/tls.md"), 3, why);
}

#[test]
fn complete_examples_in_the_grpc_guide_are_valid() {
    let guide = include_str!("../../../docs/grpc.md");
    assert_guide_examples_valid("grpc.md", guide, 1, "the guide has a complete example");
}
