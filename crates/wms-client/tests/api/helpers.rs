use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use wmslink_wms_client::{
    Detail, FreeFields, Orderer, RateLimiter, SecretString, ShipmentInstruction, Shipping,
    Unlimited, WmsClient, WmsClientConfig,
};
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, SimRateLimit, Simulator};

pub fn unique(prefix: &str) -> String {
    wmslink_testkit::unique(prefix)
}

/// Client rules for tests: http allowed to loopback, short timeouts.
pub fn config() -> WmsClientConfig {
    WmsClientConfig {
        allow_http_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        // The simulator and wiremock listen on loopback, on ports picked at random.
        refuse_private_addresses: false,
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        ..WmsClientConfig::default()
    }
}

pub async fn sim() -> RunningSimulator {
    sim_with(SimConfig::for_tests()).await
}

pub async fn sim_with(config: SimConfig) -> RunningSimulator {
    Simulator::build(config)
        .await
        .expect("simulator starts")
        .spawn()
}

/// Register a fresh key on the simulator (rate limit off unless given).
pub fn add_key(sim: &RunningSimulator, rate_limit: Option<SimRateLimit>) -> String {
    let key = unique("SECRET-KEY-");
    sim.state()
        .add_key(
            &key,
            KeyOptions {
                rate_limit: Some(rate_limit.unwrap_or_else(SimRateLimit::off)),
            },
        )
        .unwrap();
    key
}

pub fn client(base_url: &str, key: &str) -> WmsClient {
    client_with(base_url, key, &config(), Arc::new(Unlimited))
}

pub fn client_with(
    base_url: &str,
    key: &str,
    config: &WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
) -> WmsClient {
    WmsClient::new(
        base_url,
        SecretString::from(key.to_owned()),
        config,
        limiter,
    )
    .unwrap()
}

pub fn row(order_no: &str) -> ShipmentInstruction {
    ShipmentInstruction {
        order_no: order_no.to_owned(),
        robot_id: 12,
        shipper_id: 3,
        delivery_method_id: 2,
        delivery_company_id: Some(5),
        payment_method_id: 7,
        order_date: DateTime::parse_from_rfc3339("2026-11-28T09:58:00+09:00").unwrap(),
        orderer: Orderer {
            name: "山田 太郎".into(),
            kana: Some("ヤマダ タロウ".into()),
            zip: "150-0001".into(),
            pref: "東京都".into(),
            address1: "渋谷区神宮前1-1-1".into(),
            address2: None,
            tel: "03-0000-0000".into(),
            email: Some("taro@example.com".into()),
        },
        shipping: Shipping {
            name: "山田 花子".into(),
            kana: None,
            zip: "150-0001".into(),
            pref: "東京都".into(),
            address1: "渋谷区神宮前1-1-1".into(),
            address2: Some("101".into()),
            tel: "03-0000-0001".into(),
            delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 30),
            delivery_time: Some("14-16".into()),
        },
        product_total: 5400,
        shipping_fee: 600,
        cod_fee: 0,
        discount: 0,
        tax_total: 545,
        pay_total: 6000,
        note: Some("gift wrap".into()),
        free_fields: FreeFields::new().with(1, "campaign-A").unwrap(),
        details: vec![Detail {
            sku: "SKU-1".into(),
            name: "Green tea".into(),
            quantity: 2,
            unit_price: 2700,
            free_fields: FreeFields::new().with(2, "lot-9").unwrap(),
        }],
    }
}

pub fn rows(prefix: &str, n: usize) -> Vec<ShipmentInstruction> {
    (0..n).map(|i| row(&format!("{prefix}-{i:05}"))).collect()
}

pub fn requests(sim: &RunningSimulator, key: &str, endpoint: &str) -> u64 {
    sim.state()
        .counters(key)
        .unwrap()
        .requests
        .get(endpoint)
        .copied()
        .unwrap_or(0)
}

/// A loopback port with nothing listening.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

pub const LONG: Duration = Duration::from_secs(10);
