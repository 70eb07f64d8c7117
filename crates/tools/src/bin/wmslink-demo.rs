//! Sets up a demo shop against the WMS simulator and feeds it orders, so `docker compose up`
//! shows the whole flow: settings registered, connection checked, integration enabled, orders
//! sent to the WMS and their statuses coming back.

use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_tools::demo;
use wmslink_tools::shop_setup::SettingsClient;

#[derive(Parser)]
struct Cli {
    #[arg(
        long,
        env = "DEMO_SETTINGS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    settings_url: String,
    #[arg(
        long,
        env = "DEMO_ORDERS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    orders_url: String,
    /// Bearer token with the scopes settings.read, settings.write and orders.write.
    #[arg(long, env = "DEMO_TOKEN")]
    token: SecretString,
    #[arg(long, env = "DEMO_SHOP_ID", default_value = "demo-shop")]
    shop_id: String,
    /// The demo shop's key, as configured in the WMS simulator.
    #[arg(long, env = "DEMO_WMS_ACCESS_KEY")]
    wms_access_key: SecretString,
    #[arg(
        long,
        env = "DEMO_WMS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    wms_endpoint_url: String,
    /// How many demo orders to publish.
    #[arg(long, env = "DEMO_ORDERS", default_value_t = 25)]
    orders: u32,
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    // The services may still be starting: retry for a while.
    let mut last = None;
    for _ in 0..60 {
        match Channel::from_shared(url.to_owned())?.connect().await {
            Ok(channel) => return Ok(channel),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(anyhow::anyhow!("cannot reach {url}: {last:?}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    wmslink_platform::install_crypto_provider();
    let cli = Cli::parse();
    let token = BearerToken::new(&cli.token)?;
    let mut settings: SettingsClient =
        SettingsServiceClient::with_interceptor(channel(&cli.settings_url).await?, token.clone());
    let mut orders: OrderServiceClient<InterceptedService<Channel, BearerToken>> =
        OrderServiceClient::with_interceptor(channel(&cli.orders_url).await?, token);

    demo::shop(
        &cli.shop_id,
        cli.wms_access_key.clone(),
        &cli.wms_endpoint_url,
    )
    .enable(&mut settings)
    .await?;
    println!(
        "demo shop '{}' registered, checked and enabled",
        cli.shop_id
    );
    // order-events learns about the shop from the settings event; give it a moment.
    for n in 1..=cli.orders {
        let payment = if n.is_multiple_of(5) { "cod" } else { "card" };
        let order = demo::order(
            &cli.shop_id,
            &format!("DEMO-{n:06}"),
            1,
            demo::STATUS_READY,
            payment,
        );
        let mut attempts = 0;
        loop {
            match orders
                .upsert_order(orders::UpsertOrderRequest {
                    order: Some(order.clone()),
                })
                .await
            {
                Ok(answer) => {
                    println!(
                        "order {} -> {:?}",
                        order.order_no,
                        answer.into_inner().outcome()
                    );
                    break;
                }
                Err(status)
                    if attempts < 30 && status.code() == tonic::Code::FailedPrecondition =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }
    println!(
        "demo shop '{}' is live; orders flow to the WMS simulator by themselves",
        cli.shop_id
    );
    Ok(())
}
