//! The state file that keeps experiments started with `persist: true` across restarts: JSON with
//! each experiment's id, start time and the document it was posted as. Written whole to a
//! temporary file and renamed over the old one, so a crash leaves the old or the new file.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// One kept experiment.
pub struct Saved {
    pub id: String,
    pub started: SystemTime,
    pub document: Value,
}

/// Replaces the state file with `kept`.
pub fn save(path: &Path, kept: Vec<Saved>) -> std::io::Result<()> {
    let experiments: Vec<Value> = kept
        .into_iter()
        .map(|saved| {
            let started_ms = saved.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
            json!({ "id": saved.id, "started_unix_ms": started_ms, "experiment": saved.document })
        })
        .collect();
    let text = serde_json::to_vec_pretty(&json!({ "experiments": experiments }))?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// The experiments in the state file; none when it does not exist yet.
pub fn load(path: &Path) -> std::io::Result<Vec<Saved>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let root: Value = serde_json::from_slice(&text)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a weir fault state file");
    let list = root.get("experiments").and_then(Value::as_array).ok_or_else(invalid)?;
    list.iter()
        .map(|entry| {
            let id = entry.get("id").and_then(Value::as_str).ok_or_else(invalid)?;
            let started = entry.get("started_unix_ms").and_then(Value::as_u64).ok_or_else(invalid)?;
            let document = entry.get("experiment").cloned().ok_or_else(invalid)?;
            Ok(Saved { id: id.to_string(), started: UNIX_EPOCH + Duration::from_millis(started), document })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_experiments_load_back() {
        let dir = std::env::temp_dir().join(format!("weir-fault-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("faults.json");
        assert!(load(&path).unwrap().is_empty());
        let started = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let document = json!({ "route": "r", "ttl": "5m", "abort": { "status": 503 } });
        save(&path, vec![Saved { id: "ab".into(), started, document: document.clone() }]).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded[0].id.as_str(), loaded[0].started, &loaded[0].document), ("ab", started, &document));
        std::fs::write(&path, "{\"experiments\": [{}]}").unwrap();
        assert_eq!(load(&path).err().map(|e| e.kind()), Some(std::io::ErrorKind::InvalidData));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
