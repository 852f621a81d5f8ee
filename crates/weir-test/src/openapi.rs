//! Checks admin API answers against the OpenAPI description in `docs/admin-api.openapi.json`.
//!
//! A checker for the part of JSON Schema that description uses: `type`, `properties`, `required`,
//! `additionalProperties` (a boolean or a schema), `items`, `enum`, `nullable`, `oneOf`, `minimum`
//! and local `$ref`s. A keyword it does not know makes the check fail, so the description cannot
//! quietly say more than is checked. Stricter than JSON Schema in one way: an object schema without
//! `additionalProperties` admits no field it does not name, so an answer cannot grow an undocumented
//! field.

use serde_json::{Map, Value};

/// A loaded OpenAPI 3 description.
pub struct OpenApi {
    document: Value,
}

/// The keywords checked together on an object.
const OBJECT_KEYWORDS: [&str; 3] = ["properties", "required", "additionalProperties"];

/// Keywords that describe a schema without constraining it.
const ANNOTATIONS: [&str; 2] = ["description", "example"];

impl OpenApi {
    /// Reads and parses the description at `path`.
    pub fn load(path: &std::path::Path) -> OpenApi {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        OpenApi { document: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())) }
    }

    /// A description from a value (for tests of the checker itself).
    pub fn from_value(document: Value) -> OpenApi {
        OpenApi { document }
    }

    /// The schema the description gives for `method path` answering `status` with `content_type`.
    pub fn response_schema(&self, method: &str, path: &str, status: u16, content_type: &str) -> Result<&Value, String> {
        let response = self.response(method, path, status)?;
        let media = content_type.split(';').next().unwrap_or_default().trim();
        response["content"]
            .get(media)
            .map(|m| &m["schema"])
            .ok_or_else(|| format!("{method} {path} {status}: content type {media} is not described"))
    }

    /// Checks a JSON answer; `Err` lists every place it departs from the description.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &str) -> Result<(), String> {
        if content_type.is_empty() && body.is_empty() {
            return self.check_empty(method, path, status);
        }
        let schema = self.response_schema(method, path, status, content_type)?;
        if !content_type.starts_with("application/json") {
            return Ok(());
        }
        let value: Value = serde_json::from_str(body).map_err(|e| format!("{method} {path}: not JSON: {e}"))?;
        let mut errors = Vec::new();
        self.check_value(schema, &value, "$", &mut errors);
        if errors.is_empty() { Ok(()) } else { Err(format!("{method} {path}:\n  {}", errors.join("\n  "))) }
    }

    /// The description of `method path` answering `status`.
    fn response(&self, method: &str, path: &str, status: u16) -> Result<&Value, String> {
        let operation = self.document["paths"][path]
            .get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("{method} {path} is not described"))?;
        operation["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("{method} {path}: status {status} is not described"))
    }

    /// Checks an answer without a body (`204`): its status must be described with no content.
    fn check_empty(&self, method: &str, path: &str, status: u16) -> Result<(), String> {
        match self.response(method, path, status)?.get("content") {
            None => Ok(()),
            Some(_) => Err(format!("{method} {path} {status}: described with content, answered without")),
        }
    }

    /// Checks `value` against `schema`, adding what is wrong to `errors`.
    pub fn check_value(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = match self.resolve(schema) {
            Ok(schema) => schema,
            Err(error) => return errors.push(format!("{at}: {error}")),
        };
        let Some(keywords) = schema.as_object() else {
            return errors.push(format!("{at}: a schema must be an object"));
        };
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if OBJECT_KEYWORDS.iter().any(|k| keywords.contains_key(*k)) {
            self.check_object(keywords, value, at, errors);
        }
        for (keyword, argument) in keywords {
            match keyword.as_str() {
                "type" => check_type(argument, value, at, errors),
                "enum" if !argument.as_array().is_some_and(|allowed| allowed.contains(value)) => {
                    errors.push(format!("{at}: {value} is not one of {argument}"));
                }
                "minimum" if value.as_f64().zip(argument.as_f64()).is_some_and(|(v, min)| v < min) => {
                    errors.push(format!("{at}: {value} is under {argument}"));
                }
                "items" => self.check_items(argument, value, at, errors),
                "oneOf" => self.check_one_of(argument, value, at, errors),
                "enum" | "minimum" | "nullable" | "properties" | "required" | "additionalProperties" => {}
                other if ANNOTATIONS.contains(&other) => {}
                other => errors.push(format!("{at}: the checker does not know the keyword {other:?}")),
            }
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, String> {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { return Ok(schema) };
        let pointer = reference.strip_prefix('#').ok_or_else(|| format!("only local references: {reference}"))?;
        self.document.pointer(pointer).ok_or_else(|| format!("{reference} names nothing"))
    }

    /// `properties`, `required` and `additionalProperties` together; absent `additionalProperties`
    /// counts as false, so an undocumented field fails the check.
    fn check_object(&self, keywords: &Map<String, Value>, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(object) = value.as_object() else { return };
        let (empty, none) = (Map::new(), Vec::new());
        let properties = keywords.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let required = keywords.get("required").and_then(Value::as_array).unwrap_or(&none);
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(format!("{at}: {name:?} is required"));
            }
        }
        for (name, inner) in object {
            let path = format!("{at}.{name}");
            match (properties.get(name), keywords.get("additionalProperties")) {
                (Some(schema), _) => self.check_value(schema, inner, &path, errors),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(Value::Bool(false)) | None) => errors.push(format!("{path}: not described")),
                (None, Some(schema)) => self.check_value(schema, inner, &path, errors),
            }
        }
    }

    fn check_items(&self, items: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        for (i, item) in value.as_array().into_iter().flatten().enumerate() {
            self.check_value(items, item, &format!("{at}[{i}]"), errors);
        }
    }

    fn check_one_of(&self, choices: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let choices = choices.as_array().map_or(&[][..], Vec::as_slice);
        let matching = choices
            .iter()
            .filter(|choice| {
                let mut inner = Vec::new();
                self.check_value(choice, value, at, &mut inner);
                inner.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of the {} oneOf choices, not exactly one", choices.len()));
        }
    }
}

fn check_type(expected: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let fits = match expected.as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        _ => return errors.push(format!("{at}: unknown type {expected}")),
    };
    if !fits {
        errors.push(format!("{at}: {value} is not of type {expected}"));
    }
}
