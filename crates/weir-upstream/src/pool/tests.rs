use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;

/// An h2c server that holds every response until the test lets them go, counting connections
/// and requests as they arrive.
struct HeldServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    release: watch::Sender<bool>,
}

impl HeldServer {
    async fn start() -> HeldServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = watch::channel(false);
        let server = HeldServer {
            addr,
            connections: Arc::default(),
            requests: Arc::default(),
            arrived: Arc::default(),
            release,
        };
        let (connections, requests, arrived) =
            (server.connections.clone(), server.requests.clone(), server.arrived.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (requests, arrived, released) = (requests.clone(), arrived.clone(), released.clone());
                let service = hyper::service::service_fn(move |_request: Request<hyper::body::Incoming>| {
                    let (requests, arrived, mut released) = (requests.clone(), arrived.clone(), released.clone());
                    async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        arrived.notify_waiters();
                        let _ = released.wait_for(|go| *go).await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                tokio::spawn(async move {
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        server
    }

    async fn wait_for_requests(&self, n: usize) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.requests.load(Ordering::SeqCst) >= n {
                return;
            }
            arrived.await;
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn settings(max_streams: usize, idle_timeout: Duration) -> PoolSettings {
    PoolSettings {
        connect_timeout: Duration::from_secs(5),
        max_idle: 8,
        idle_timeout,
        max_connections: 64,
        acquire_timeout: Duration::from_secs(5),
        tcp_keepalive: None,
        tls: None,
        protocol: UpstreamProtocol::Http2,
        http2: Http2Settings { max_concurrent_streams: max_streams, ..Http2Settings::default() },
    }
}

fn request(addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}/")).body(Full::default()).unwrap()
}

/// Sends `n` requests at once, each in its own task; they finish when the server lets them go.
fn send_many(pool: &Arc<EndpointPool<Full<Bytes>>>, addr: SocketAddr, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let response = pool.send(request(addr)).await.unwrap();
                let status = response.status().as_u16();
                response.into_body().collect().await.unwrap();
                status
            })
        })
        .collect()
}

#[tokio::test]
async fn http2_requests_share_one_connection_even_in_a_cold_burst() {
    let server = HeldServer::start().await;
    let pool = Arc::new(EndpointPool::new(server.addr, settings(100, Duration::from_secs(60))));
    let sent = send_many(&pool, server.addr, 20);
    server.wait_for_requests(20).await;
    assert_eq!(server.connections(), 1, "twenty requests at once on a fresh pool share one connection");
    assert_eq!(pool.open_count(), 1);
    server.release.send_replace(true);
    for request in sent {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(pool.idle_count(), 1, "the connection stays, with no stream open");
}

#[tokio::test]
async fn streams_beyond_the_cap_open_another_connection() {
    let server = HeldServer::start().await;
    let pool = Arc::new(EndpointPool::new(server.addr, settings(2, Duration::from_secs(60))));
    let sent = send_many(&pool, server.addr, 5);
    server.wait_for_requests(5).await;
    assert_eq!(server.connections(), 3, "two streams each: five requests need three connections");
    server.release.send_replace(true);
    for request in sent {
        assert_eq!(request.await.unwrap(), 200);
    }
    // Requests pack onto the oldest connection again.
    let response = pool.send(request(server.addr)).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_replaced() {
    let server = HeldServer::start().await;
    server.release.send_replace(true);
    // Every connection with no stream has been idle long enough.
    let pool = Arc::new(EndpointPool::new(server.addr, settings(100, Duration::ZERO)));
    for expected in 1..=2 {
        let response = pool.send(request(server.addr)).await.unwrap();
        response.into_body().collect().await.unwrap();
        assert_eq!(server.connections(), expected);
    }
    assert_eq!(pool.open_count(), 1, "the first connection was closed when the second was made");
}

#[tokio::test]
async fn the_connection_cap_holds_for_http2_too() {
    let server = HeldServer::start().await;
    let mut capped = settings(1, Duration::from_secs(60));
    capped.max_connections = 2;
    capped.acquire_timeout = Duration::from_millis(50);
    let pool = Arc::new(EndpointPool::new(server.addr, capped));
    let sent = send_many(&pool, server.addr, 2);
    server.wait_for_requests(2).await;
    let third = pool.connection().await;
    assert!(matches!(third, Err(UpstreamError::PoolExhausted { max: 2, .. })));
    server.release.send_replace(true);
    for request in sent {
        assert_eq!(request.await.unwrap(), 200);
    }
}
