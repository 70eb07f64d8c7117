use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wmslink_wms_simulator::{RunningSimulator, SimConfig, Simulator};

pub struct Sim {
    pub running: RunningSimulator,
    pub http: reqwest::Client,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn result(&self) -> &str {
        self.body["result"].as_str().unwrap_or("")
    }
    pub fn first_error_code(&self) -> &str {
        self.body["error"][0]["code"].as_str().unwrap_or("")
    }
}

pub async fn start(config: SimConfig) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let running = Simulator::build(config).await.unwrap().spawn();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap();
    Sim { running, http }
}

pub async fn start_default() -> Sim {
    start(SimConfig::for_tests()).await
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    pub async fn send(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.header("X-API-KEY", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.send(Some(key), Method::GET, path, None).await
    }

    pub async fn register(&self, key: &str, rows: Vec<Value>) -> Answer {
        self.send(
            Some(key),
            Method::POST,
            "/order/",
            Some(json!({ "data": rows })),
        )
        .await
    }

    /// Register valid rows and return their order_ids.
    pub async fn register_ok(&self, key: &str, order_nos: &[&str]) -> Vec<i64> {
        let a = self
            .register(key, order_nos.iter().map(|n| row(n)).collect())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.result(), "OK", "{:?}", a.body);
        a.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["order_id"].as_i64().unwrap())
            .collect()
    }

    pub async fn ctl(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(None, method, path, body).await
    }

    /// A fresh key registered through the control API (rate limit off unless given).
    pub async fn key(&self, rate_limit: Option<Value>) -> String {
        let key = wmslink_testkit::unique("sim-key-");
        let rl = rate_limit.unwrap_or(json!({ "enabled": false }));
        let a = self
            .ctl(
                Method::POST,
                "/_sim/keys",
                Some(json!({ "key": key, "rate_limit": rl })),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        key
    }

    pub async fn counters(&self, key: &str) -> Value {
        self.ctl(Method::GET, &format!("/_sim/keys/{key}/counters"), None)
            .await
            .body
    }
}

pub fn row(order_no: &str) -> Value {
    json!({
        "order_no": order_no, "robot_id": 12, "shipper_id": 3, "delivery_method_id": 2,
        "delivery_company_id": 5, "payment_method_id": 7, "order_date": "2026-11-28T09:58:00+09:00",
        "orderer": {"name": "山田太郎", "kana": "ヤマダタロウ", "zip": "150-0001", "pref": "東京都",
                    "address1": "渋谷区1-1", "address2": "", "tel": "03-0000-0000", "email": "t@example.com"},
        "shipping": {"name": "山田太郎", "zip": "150-0001", "pref": "東京都", "address1": "渋谷区1-1",
                     "tel": "03-0000-0000", "delivery_date": "2026-11-30", "delivery_time": "14-16"},
        "product_total": 5400, "shipping_fee": 600, "cod_fee": 0, "discount": 0, "tax_total": 545, "pay_total": 6000,
        "note": "line1\r\nline2",
        "free_fields": {"free1": "a"},
        "details": [{"sku": "SKU-1", "name": "Tea", "quantity": 2, "unit_price": 2700, "free_fields": {"free1": "x"}}]
    })
}
