//! The machine's own limits, measured on the same servers the services use, in the same run:
//! single-row commits of the fleet's PostgreSQL (1 and 4 connections), JetStream
//! publish-with-ack (awaited one by one, and 256 in flight; 1 KiB messages), and the
//! simulator's request rate with its limit off (one-row registrations, 32 connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::fleet::Fleet;

/// The limits measured in one repetition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub pg_commits_1: f64,
    pub pg_commits_4: f64,
    pub js_one_by_one: f64,
    pub js_in_flight: f64,
    pub sim_requests: f64,
}

pub async fn measure(fleet: &Fleet, seconds: f64) -> anyhow::Result<Limits> {
    let window = Duration::from_secs_f64(seconds);
    Ok(Limits {
        pg_commits_1: pg_commits(fleet, 1, window).await?,
        pg_commits_4: pg_commits(fleet, 4, window).await?,
        js_one_by_one: jetstream(fleet, 1, window).await?,
        js_in_flight: jetstream(fleet, 256, window).await?,
        sim_requests: simulator(fleet, 32, window).await?,
    })
}

/// Single-row `INSERT`s, each its own transaction (autocommit), on `connections` connections.
async fn pg_commits(fleet: &Fleet, connections: usize, window: Duration) -> anyhow::Result<f64> {
    let mut admin = PgConnection::connect(&fleet.postgres.url("postgres")).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, body text)")
        .execute(&mut admin)
        .await?;
    let commits = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let url = fleet.postgres.url("postgres");
        let commits = commits.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await?;
            while start.elapsed() < window {
                sqlx::query("INSERT INTO bench_commits (body) VALUES ($1)")
                    .bind("a single-row commit of the benchmark")
                    .execute(&mut conn)
                    .await?;
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let rate = commits.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_commits")
        .execute(&mut admin)
        .await?;
    Ok(rate)
}

/// Publishes with ack of 1 KiB messages to a stream of its own, `in_flight` at a time.
async fn jetstream(fleet: &Fleet, in_flight: usize, window: Duration) -> anyhow::Result<f64> {
    let js = fleet.jetstream().await?;
    let name = format!("BENCH_LIMITS_{in_flight}");
    let subject = format!("benchlimits.{in_flight}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .context("creating the limits stream")?;
    let payload = bytes_of(1024);
    let start = Instant::now();
    let published = if in_flight == 1 {
        let mut n = 0u64;
        while start.elapsed() < window {
            js.publish(subject.clone(), payload.clone())
                .await?
                .await
                .context("ack")?;
            n += 1;
        }
        n
    } else {
        let acks = futures::stream::iter(0..)
            .take_while(|_| std::future::ready(start.elapsed() < window))
            .map(|_| {
                let js = js.clone();
                let subject = subject.clone();
                let payload = payload.clone();
                async move {
                    js.publish(subject, payload).await?.await?;
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(in_flight);
        futures::pin_mut!(acks);
        let mut n = 0u64;
        while let Some(ack) = acks.next().await {
            ack?;
            n += 1;
        }
        n
    };
    let rate = published as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(&name).await?;
    Ok(rate)
}

fn bytes_of(len: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; len])
}

/// A one-row registration as the dispatcher sends it (a complete, valid row).
pub fn registration_row(order_no: &str) -> serde_json::Value {
    serde_json::json!({
        "order_no": order_no, "robot_id": 12, "shipper_id": 3, "delivery_method_id": 2,
        "payment_method_id": 7, "order_date": "2026-11-28T09:58:00+09:00",
        "orderer": {"name": "山田太郎", "zip": "150-0001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "03-0000-0000"},
        "shipping": {"name": "山田太郎", "zip": "150-0001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "03-0000-0000"},
        "product_total": 5400, "shipping_fee": 600, "cod_fee": 0, "discount": 0, "tax_total": 545, "pay_total": 6000,
        "details": [{"sku": "SKU-1", "name": "Tea", "quantity": 2, "unit_price": 2700}]
    })
}

/// One-row registrations on an account without a limit, `connections` at a time.
async fn simulator(fleet: &Fleet, connections: usize, window: Duration) -> anyhow::Result<f64> {
    let key = format!("bench-limits-{}", uuid::Uuid::new_v4().simple());
    fleet.sim.add_key_limited(&key, None).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/order/", fleet.sim_url);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (http, url, key, counter) = (http.clone(), url.clone(), key.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < window {
                let row = registration_row(&format!("LIMIT-{worker:03}-{n:08}"));
                http.post(&url)
                    .header("X-API-KEY", &key)
                    .json(&serde_json::json!({ "data": [row] }))
                    .send()
                    .await?
                    .error_for_status()?;
                n += 1;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, reqwest::Error>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
