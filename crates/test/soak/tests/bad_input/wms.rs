//! Bad WMS answers (malformed JSON, wrong types, huge bodies, a missing `total`, HTML error
//! pages, a slow drip, a body shorter than announced), served byte for byte by a raw loopback
//! server: each is a typed error of the right kind in bounded time and memory, and a
//! registration whose answer cannot be read is an unknown outcome, never a success or a
//! refusal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::DateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wmslink_wms_client::{
    Detail, FreeFields, Orderer, SearchQuery, SecretString, ShipmentInstruction, Shipping,
    Unlimited, WmsClient, WmsClientConfig, WmsError,
};

/// What the raw WMS answers every request with.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Send the body one byte at a time, this far apart.
    pub drip: Option<Duration>,
    /// Announce this Content-Length instead of the body's, then close.
    pub announced_len: Option<usize>,
}

impl Answer {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            drip: None,
            announced_len: None,
        }
    }

    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, "application/json", body.as_bytes().to_vec())
    }
}

/// A loopback HTTP/1.1 server answering every request with the current [`Answer`].
pub struct RawWms {
    pub base_url: String,
    answer: Arc<Mutex<Answer>>,
}

impl RawWms {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let answer = Arc::new(Mutex::new(Answer::json(200, "{}")));
        let shared = answer.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let answer = shared
                    .lock()
                    .map(|a| a.clone())
                    .unwrap_or_else(|p| p.into_inner().clone());
                tokio::spawn(serve(socket, answer));
            }
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            answer,
        }
    }

    pub fn answer(&self, answer: Answer) {
        match self.answer.lock() {
            Ok(mut current) => *current = answer,
            Err(poisoned) => *poisoned.into_inner() = answer,
        }
    }

    pub fn client(&self, request_timeout_ms: u64) -> WmsClient {
        let config = WmsClientConfig {
            allow_http_hosts: vec!["127.0.0.1".into()],
            connect_timeout_ms: 1_000,
            request_timeout_ms,
            // The raw server listens on loopback.
            refuse_private_addresses: false,
            ..WmsClientConfig::default()
        };
        WmsClient::new(
            &self.base_url,
            SecretString::from("raw-wms-key".to_owned()),
            &config,
            Arc::new(Unlimited),
        )
        .expect("client")
    }
}

async fn serve(mut socket: tokio::net::TcpStream, answer: Answer) {
    // Read the request head and a body of the announced length (enough for our requests).
    let mut request = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await
        else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(head_end) = find(&request, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= head_end + 4 + body_len {
                break;
            }
        }
    }
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.announced_len.unwrap_or(answer.body.len())
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match answer.drip {
        Some(every) => {
            for byte in &answer.body {
                if socket.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }
        None => {
            let _ = socket.write_all(&answer.body).await;
        }
    }
    let _ = socket.shutdown().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn row(order_no: &str) -> ShipmentInstruction {
    let address = Orderer {
        name: "山田 太郎".into(),
        kana: None,
        zip: "150-0001".into(),
        pref: "東京都".into(),
        address1: "渋谷区神宮前1-1-1".into(),
        address2: None,
        tel: "03-0000-0000".into(),
        email: None,
    };
    ShipmentInstruction {
        order_no: order_no.to_owned(),
        robot_id: 1,
        shipper_id: 1,
        delivery_method_id: 1,
        delivery_company_id: None,
        payment_method_id: 1,
        order_date: DateTime::parse_from_rfc3339("2026-11-28T09:58:00+09:00").expect("date"),
        orderer: address,
        shipping: Shipping {
            name: "山田 花子".into(),
            kana: None,
            zip: "150-0001".into(),
            pref: "東京都".into(),
            address1: "渋谷区神宮前1-1-1".into(),
            address2: None,
            tel: "03-0000-0001".into(),
            delivery_date: None,
            delivery_time: None,
        },
        product_total: 100,
        shipping_fee: 0,
        cod_fee: 0,
        discount: 0,
        tax_total: 0,
        pay_total: 100,
        note: None,
        free_fields: FreeFields::new(),
        details: vec![Detail {
            sku: "SKU-1".into(),
            name: "tea".into(),
            quantity: 1,
            unit_price: 100,
            free_fields: FreeFields::new(),
        }],
    }
}

const ORDER: &str = r#"{"order_id": 7, "order_no": "A-1", "status_id": 50, "status_name": "出荷待ち",
    "cancel_flag": 0, "shipped_flag": 0, "shipping_status_id": null, "tracking_code": null,
    "shipping_date": null, "update_date": "2026-11-28T10:15:00+09:00"}"#;

fn html_page(status: u16) -> Answer {
    Answer::new(
        status,
        "text/html",
        format!(
            "<html><head><title>{status}</title></head><body><h1>Bad Gateway</h1><p>nginx</p></body></html>"
        ),
    )
}

type Check = fn(&WmsError) -> bool;

fn malformed(e: &WmsError) -> bool {
    matches!(e, WmsError::Malformed(_))
}
fn unknown(e: &WmsError) -> bool {
    matches!(e, WmsError::UnknownOutcome { .. })
}
fn transient(e: &WmsError) -> bool {
    matches!(e, WmsError::Transient { .. })
}

#[tokio::test]
async fn every_bad_answer_is_a_typed_error_in_bounded_time() {
    let wms = RawWms::start().await;
    let client = wms.client(1_500);
    let huge = {
        let mut body = br#"{"result":"OK","total":1,"data":[{"pad":""#.to_vec();
        body.resize(17 * 1024 * 1024, b'x');
        body.extend_from_slice(br#""}]}"#);
        body
    };
    let mut drip = Answer::json(
        200,
        &format!(r#"{{"result":"OK","total":1,"data":[{ORDER}]}}"#),
    );
    drip.drip = Some(Duration::from_millis(100));
    let mut short = Answer::json(200, r#"{"result":"OK","data":[]"#);
    short.announced_len = Some(4_096);
    let cases: Vec<(&str, Answer, Check, Check)> = vec![
        // (case, answer, what a search gets, what a registration gets)
        (
            "malformed JSON",
            Answer::json(200, r#"{"result": "OK", "data": [}"#),
            malformed,
            unknown,
        ),
        (
            "wrong types",
            Answer::json(
                200,
                r#"{"result": "OK", "data": [{"order_id": "seven", "order_no": 1}], "total": "many"}"#,
            ),
            malformed,
            unknown,
        ),
        (
            "result of a wrong type",
            Answer::json(200, r#"{"result": true, "data": []}"#),
            malformed,
            unknown,
        ),
        (
            "a JSON string",
            Answer::json(200, r#""OK""#),
            malformed,
            unknown,
        ),
        ("empty body", Answer::json(200, ""), malformed, unknown),
        (
            "huge body",
            Answer::new(200, "application/json", huge),
            malformed,
            unknown,
        ),
        ("HTML page with 200", html_page(200), malformed, unknown),
        ("HTML error page 500", html_page(500), transient, |e| {
            transient(e) || unknown(e)
        }),
        ("HTML error page 502", html_page(502), transient, unknown),
        ("HTML error page 503", html_page(503), transient, |e| {
            transient(e) || unknown(e)
        }),
        ("HTML error page 504", html_page(504), transient, unknown),
        (
            "slow drip",
            drip,
            |e| matches!(e, WmsError::Timeout),
            unknown,
        ),
        ("body shorter than announced", short, transient, unknown),
    ];
    for (case, answer, search_check, register_check) in cases {
        wms.answer(answer);
        let started = Instant::now();
        let search = client.search(&SearchQuery::new()).await;
        let elapsed = started.elapsed();
        match &search {
            Err(err) => assert!(search_check(err), "{case}: search: {err:?}"),
            Ok(page) => panic!("{case}: search accepted: {page:?}"),
        }
        assert!(
            elapsed < Duration::from_secs(4),
            "{case}: search took {elapsed:?}"
        );
        let started = Instant::now();
        let register = client.register_batch(&[row("A-1")]).await;
        let elapsed = started.elapsed();
        match &register {
            Err(err) => assert!(register_check(err), "{case}: register: {err:?}"),
            Ok(rows) => panic!("{case}: registration taken as answered: {rows:?}"),
        }
        assert!(
            elapsed < Duration::from_secs(4),
            "{case}: register took {elapsed:?}"
        );
        // The error never carries the access key.
        for err in [search.err(), register.err()].into_iter().flatten() {
            assert!(!format!("{err} {err:?}").contains("raw-wms-key"), "{case}");
        }
    }
}

#[tokio::test]
async fn a_search_answer_without_total_leaves_the_total_unknown() {
    let wms = RawWms::start().await;
    wms.answer(Answer::json(
        200,
        &format!(r#"{{"result":"OK","data":[{ORDER}]}}"#),
    ));
    let page = wms
        .client(2_000)
        .search(&SearchQuery::new().offset(40))
        .await
        .expect("a page without total");
    assert_eq!(page.orders.len(), 1);
    // Unknown, not "offset + the orders it holds": the port pages on until a short page.
    assert_eq!(page.total, None);
}
