use super::{normalize_template, prefix_matches};

#[test]
fn prefixes_match_at_segment_boundaries() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/"));
    assert!(prefix_matches("/api", "/api/users"));
    assert!(!prefix_matches("/api", "/apix"));
    assert!(!prefix_matches("/api", "/ap"));
    assert!(prefix_matches("/api/", "/api/x"));
    assert!(!prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn template_parameter_names_are_normalized() {
    assert_eq!(normalize_template("/users/{id}/posts/{*rest}"), "/users/{p1}/posts/{*p2}");
    assert_eq!(normalize_template("/users/{name}"), normalize_template("/users/{id}"));
    assert_eq!(normalize_template("/static/path"), "/static/path");
}
