use std::path::PathBuf;

use super::*;

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-writer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn lines_reach_the_file_and_reopen_follows_a_rename() {
    let path = temp_path("reopen");
    let writer = LogWriter::start(Destination::File(path.clone()), 16, Counter::default()).unwrap();
    writer.submit(b"one\n");
    assert!(writer.flush(Duration::from_secs(10)));
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    writer.submit(b"two\n");
    writer.reopen();
    assert!(writer.flush(Duration::from_secs(10)));
    writer.submit(b"three\n");
    assert!(writer.flush(Duration::from_secs(10)));
    // "two" was submitted before the reopen, so it went to the renamed file; "three" came after it.
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
}

#[test]
fn lines_from_many_threads_all_arrive_whole() {
    let path = temp_path("threads");
    let writer = Arc::new(LogWriter::start(Destination::File(path.clone()), 1 << 20, Counter::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    writer.submit_with(|out| out.extend_from_slice(format!("thread {t} line {i}\n").as_bytes()));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(writer.flush(Duration::from_secs(10)));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 16_000);
    for t in 0..8 {
        // Each thread's lines keep their order.
        let mine: Vec<_> = text.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
        let expected: Vec<_> = (0..2000).map(|i| format!("thread {t} line {i}")).collect();
        assert_eq!(mine, expected);
    }
}

#[test]
fn a_full_buffer_drops_and_counts() {
    let dropped = Counter::default();
    // No thread empties these buffers.
    let writer = LogWriter::unstarted(8, dropped.clone());
    let limit = writer.shared.shard_lines;
    for _ in 0..limit {
        writer.submit(b"x\n");
    }
    assert_eq!(dropped.get(), 0);
    writer.submit_with(|_| panic!("a full buffer takes no line"));
    writer.submit(b"y\n");
    assert_eq!(dropped.get(), 2);
    // Nobody writes: a flush gives up at its deadline instead of waiting forever.
    assert!(!writer.flush(Duration::from_millis(20)));
}

#[test]
fn closing_the_writer_writes_what_is_left() {
    let path = temp_path("close");
    let writer = LogWriter::start(Destination::File(path.clone()), 16, Counter::default()).unwrap();
    writer.submit(b"last words\n");
    writer.close();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "last words\n");
}
