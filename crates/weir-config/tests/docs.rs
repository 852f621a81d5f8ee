//! Full configurations shown in the rate-limiting guide are valid: every YAML block there that has a
//! `listeners` section passes validation.

use weir_config::{Format, parse_str};

/// The YAML blocks of a Markdown text.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn rate_limiting_guide_examples_validate() {
    let guide = include_str!("../../../docs/rate-limiting.md");
    let full: Vec<String> = yaml_blocks(guide).into_iter().filter(|b| b.contains("listeners:")).collect();
    assert!(!full.is_empty(), "no full configuration in the guide");
    for block in full {
        if let Err(error) = parse_str(&block, Format::Yaml, "rate-limiting.md") {
            panic!("{error}\n{block}");
        }
    }
}
