//! The WMS simulator's control API (`/_sim/…`), spoken over HTTP to the simulator process: the
//! soak reads what the WMS received and holds from here only.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Deserialize;
use wmslink_wms_simulator::{Counters, Faults, OrderNoCounters, SimOrder};

#[derive(Clone)]
pub struct SimControl {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct OrderNos {
    order_nos: BTreeMap<String, OrderNoCounters>,
}

#[derive(Deserialize)]
struct Orders {
    orders: Vec<SimOrder>,
}

impl SimControl {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    fn key_url(&self, key: &str, rest: &str) -> String {
        let key: String = url_escape(key);
        format!("{}/_sim/keys/{key}{rest}", self.base)
    }

    pub async fn add_key(&self, key: &str) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_sim/keys", self.base))
            .json(&serde_json::json!({ "key": key }))
            .send()
            .await?
            .error_for_status()
            .context("adding a simulator key")?;
        Ok(())
    }

    /// Adds an account with a rate limit of its own: `Some((per_second, burst))`, or `None`
    /// for none at all.
    pub async fn add_key_limited(
        &self,
        key: &str,
        rate_limit: Option<(f64, u32)>,
    ) -> anyhow::Result<()> {
        let rate_limit = match rate_limit {
            Some((per_second, burst)) => {
                serde_json::json!({ "enabled": true, "per_second": per_second, "burst": burst })
            }
            None => serde_json::json!({ "enabled": false }),
        };
        self.http
            .post(format!("{}/_sim/keys", self.base))
            .json(&serde_json::json!({ "key": key, "rate_limit": rate_limit }))
            .send()
            .await?
            .error_for_status()
            .context("adding a simulator key")?;
        Ok(())
    }

    pub async fn set_faults(&self, key: &str, faults: &Faults) -> anyhow::Result<()> {
        self.http
            .put(self.key_url(key, "/faults"))
            .json(faults)
            .send()
            .await?
            .error_for_status()
            .context("setting faults")?;
        Ok(())
    }

    pub async fn clear_faults(&self, key: &str) -> anyhow::Result<()> {
        self.http
            .delete(self.key_url(key, "/faults"))
            .send()
            .await?
            .error_for_status()
            .context("clearing faults")?;
        Ok(())
    }

    pub async fn counters(&self, key: &str) -> anyhow::Result<Counters> {
        Ok(self
            .http
            .get(self.key_url(key, "/counters"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn order_nos(&self, key: &str) -> anyhow::Result<BTreeMap<String, OrderNoCounters>> {
        let answer: OrderNos = self
            .http
            .get(self.key_url(key, "/order_nos"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer.order_nos)
    }

    pub async fn orders(&self, key: &str) -> anyhow::Result<Vec<SimOrder>> {
        let answer: Orders = self
            .http
            .get(self.key_url(key, "/orders"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer.orders)
    }

    pub async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/_sim/health", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// Percent-encodes what is not unreserved in a path segment.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
