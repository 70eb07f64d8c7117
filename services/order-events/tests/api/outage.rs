//! PostgreSQL out of reach: the cart's orders wait the outage out, whatever the delivery budget,
//! and nothing is dead-lettered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::consumer::pull;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use wmslink_platform::nats::StreamKind;
use wmslink_testkit::eventually;

use crate::helpers::{DEADLINE, TestApp, order, spawn_app_with};

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection dropped, new
/// ones refused) and restore: an outage as the service sees it.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let open = open.clone();
            let links = links.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: refused
                    }
                    let target = target.clone();
                    links.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Self {
            addr,
            open,
            links,
            accept,
        }
    }

    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

async fn cart_orders_delivered(app: &TestApp) -> u64 {
    let stream = app
        .nats
        .js
        .get_stream(app.nats.subjects.stream_name(StreamKind::CartOrders))
        .await
        .expect("stream");
    let mut consumer = stream
        .get_consumer::<pull::Config>("order-events-cart-orders")
        .await
        .expect("consumer");
    consumer
        .info()
        .await
        .expect("info")
        .delivered
        .consumer_sequence
}

#[tokio::test]
async fn a_database_outage_dead_letters_nothing() {
    let server = wmslink_testkit::postgres_server_url();
    let proxy = Proxy::start(host_port(&server).to_owned()).await;
    let app = spawn_app_with(|config| {
        config.database.url =
            config
                .database
                .url
                .replacen(host_port(&server), &proxy.addr.to_string(), 1);
        config.consumers.max_deliver = 2;
    })
    .await;
    app.make_shop_known("shop-a").await;

    proxy.cut().await;
    app.publish_order(&order("shop-a", "OUT-1", 1, "new")).await;
    // Delivered twice the delivery budget while the database is out of reach.
    eventually(DEADLINE, "four deliveries during the outage", || async {
        let letters = app.dead_letters().await;
        assert!(
            letters.is_empty(),
            "dead-lettered during the outage: {letters:?}"
        );
        (cart_orders_delivered(&app).await >= 4).then_some(())
    })
    .await;

    proxy.restore();
    app.wait_for_revision("shop-a", "OUT-1", 1).await;
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
}
