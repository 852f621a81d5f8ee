use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use weir_telemetry::Metrics;

use super::*;

/// Longest a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(10);

/// A parker whose resumed connections come out of the returned channel.
struct Setup {
    parking: Parking<u32>,
    resumed: mpsc::UnboundedReceiver<(TcpStream, u32)>,
    stopping: CancellationToken,
    metrics: std::sync::Arc<Metrics>,
}

fn setup() -> Setup {
    let metrics = Metrics::new();
    let (sender, resumed) = mpsc::unbounded_channel();
    let stopping = CancellationToken::new();
    let resume = move |stream, state| {
        let _ = sender.send((stream, state));
    };
    let parking = Parking::start(resume, stopping.clone(), metrics.listener("t")).unwrap();
    Setup { parking, resumed, stopping, metrics }
}

impl Setup {
    fn parked(&self) -> i64 {
        let text = self.metrics.encode();
        let line = text.lines().find(|line| line.starts_with("weir_connections_parked{listener=\"t\"}")).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Waits until the gauge shows `count` parked (the parker takes connections in its own time).
    async fn until_parked(&self, count: i64) {
        tokio::time::timeout(WAIT, async {
            while self.parked() != count {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never {count} parked; {} are", self.parked()));
    }

    async fn next_resumed(&mut self) -> (TcpStream, u32) {
        tokio::time::timeout(WAIT, self.resumed.recv()).await.expect("a connection resumed").unwrap()
    }
}

/// A connected pair: the client's end and the server's.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

fn in_a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn bytes_from_the_client_resume_a_parked_connection_with_its_state() {
    let mut setup = setup();
    let (mut client, server) = pair().await;
    setup.parking.park(server, 7, in_a_minute());
    setup.until_parked(1).await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let (mut server, state) = setup.next_resumed().await;
    assert_eq!(state, 7);
    assert_eq!(setup.parked(), 0);
    let mut read = [0u8; 64];
    let n = tokio::time::timeout(WAIT, server.read(&mut read)).await.unwrap().unwrap();
    assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n");
    // Back in the runtime's poller: it writes as any connection does.
    server.write_all(b"ok").await.unwrap();
    let n = client.read(&mut read).await.unwrap();
    assert_eq!(&read[..n], b"ok");
}

#[tokio::test]
async fn a_client_that_closes_resumes_its_connection_which_reads_the_end() {
    let mut setup = setup();
    let (client, server) = pair().await;
    setup.parking.park(server, 1, in_a_minute());
    setup.until_parked(1).await;
    drop(client);
    let (mut server, _) = setup.next_resumed().await;
    let mut read = [0u8; 8];
    assert_eq!(tokio::time::timeout(WAIT, server.read(&mut read)).await.unwrap().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_is_closed_at_its_deadline_and_not_before() {
    let mut setup = setup();
    let (mut client, server) = pair().await;
    let due = Instant::now() + Duration::from_secs(30);
    setup.parking.park(server, 1, due);
    let mut read = [0u8; 8];
    assert_eq!(client.read(&mut read).await.unwrap(), 0, "closed");
    assert!(Instant::now() >= due, "closed {:?} early", due - Instant::now());
    assert_eq!(setup.parked(), 0);
    assert!(setup.resumed.try_recv().is_err(), "a connection closed at its deadline is not resumed");
}

#[tokio::test(start_paused = true)]
async fn a_resumed_connection_parked_again_keeps_its_new_deadline() {
    let mut setup = setup();
    let (mut client, server) = pair().await;
    let start = Instant::now();
    setup.parking.park(server, 1, start + Duration::from_secs(10));
    setup.until_parked(1).await;
    client.write_all(b"a").await.unwrap();
    let (mut server, _) = setup.next_resumed().await;
    let mut read = [0u8; 8];
    server.read_exact(&mut read[..1]).await.unwrap();
    // The slot is used again; the first parking's deadline is left behind in the queue.
    setup.parking.park(server, 2, start + Duration::from_secs(40));
    setup.until_parked(1).await;
    tokio::time::sleep_until(start + Duration::from_secs(20)).await;
    client.write_all(b"b").await.unwrap();
    let (mut server, state) = setup.next_resumed().await;
    assert_eq!(state, 2, "still parked past the first deadline");
    server.read_exact(&mut read[..1]).await.unwrap();
    assert_eq!(&read[..1], b"b");
}

#[tokio::test]
async fn stopping_closes_every_parked_connection_and_later_ones_at_once() {
    let setup = setup();
    let mut clients = Vec::new();
    for state in 0..3 {
        let (client, server) = pair().await;
        setup.parking.park(server, state, in_a_minute());
        clients.push(client);
    }
    setup.until_parked(3).await;
    setup.stopping.cancel();
    let mut read = [0u8; 8];
    for client in &mut clients {
        assert_eq!(tokio::time::timeout(WAIT, client.read(&mut read)).await.unwrap().unwrap(), 0);
    }
    assert_eq!(setup.parked(), 0);
    // The parker is gone: a connection parked now closes.
    let (mut client, server) = pair().await;
    tokio::time::timeout(WAIT, async {
        while !setup.parking.parked.is_closed() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    setup.parking.park(server, 9, in_a_minute());
    assert_eq!(tokio::time::timeout(WAIT, client.read(&mut read)).await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn many_connections_resume_each_with_its_own_state() {
    let mut setup = setup();
    let mut clients = Vec::new();
    // More than one epoll read takes.
    let count = EVENTS_PER_WAIT as u32 * 2 + 5;
    for state in 0..count {
        let (client, server) = pair().await;
        setup.parking.park(server, state, in_a_minute());
        clients.push(client);
    }
    setup.until_parked(i64::from(count)).await;
    for (state, client) in clients.iter_mut().enumerate() {
        client.write_all(&(state as u32).to_be_bytes()).await.unwrap();
    }
    for _ in 0..count {
        let (mut server, state) = setup.next_resumed().await;
        let mut read = [0u8; 4];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(u32::from_be_bytes(read), state);
    }
    assert_eq!(setup.parked(), 0);
}

#[test]
fn stale_deadlines_are_dropped_when_they_are_most_of_the_queue() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let metrics = Metrics::new();
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
        let mut lot = Lot {
            slots: Vec::new(),
            free: Vec::new(),
            deadlines: VecDeque::new(),
            live: 0,
            metrics: metrics.listener("t"),
            resume: |_: TcpStream, _: u32| {},
        };
        let (_client, server) = pair().await;
        let mut socket = server.into_std().unwrap();
        for round in 0..1000 {
            lot.park(epoll.as_fd(), Parked { socket, state: round, due: in_a_minute() });
            assert_eq!(lot.slots.len(), 1, "one slot, used again");
            assert!(lot.deadlines.len() <= 2 * lot.live + 64, "{} deadlines kept", lot.deadlines.len());
            let key = lot.deadlines.back().unwrap().1;
            socket = lot.take(key).unwrap().0;
            epoll::delete(&epoll, &socket).unwrap();
        }
    });
}
