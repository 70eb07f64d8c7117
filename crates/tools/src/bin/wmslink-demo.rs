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
use wmslink_proto::settings::v1 as settings;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;

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

type Authed = InterceptedService<Channel, BearerToken>;

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
    let mut settings: SettingsServiceClient<Authed> =
        SettingsServiceClient::with_interceptor(channel(&cli.settings_url).await?, token.clone());
    let mut orders: OrderServiceClient<Authed> =
        OrderServiceClient::with_interceptor(channel(&cli.orders_url).await?, token);

    setup_shop(&mut settings, &cli).await?;
    // order-events learns about the shop from the settings event; give it a moment.
    for n in 1..=cli.orders {
        let order = demo_order(&cli.shop_id, n);
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

async fn setup_shop(client: &mut SettingsServiceClient<Authed>, cli: &Cli) -> anyhow::Result<()> {
    use settings::OrderStatusKind as Kind;
    let status = |code: &str, name: &str, kind: Kind| settings::OrderStatus {
        code: code.into(),
        display_name: name.into(),
        kind: kind as i32,
    };
    client
        .put_order_status_catalog(settings::PutOrderStatusCatalogRequest {
            shop_id: cli.shop_id.clone(),
            statuses: vec![
                status("new", "新規受付", Kind::Open),
                status("ready_to_ship", "出荷待ち", Kind::Open),
                status("cancelled", "キャンセル", Kind::Cancelled),
                status("completed", "完了", Kind::Completed),
            ],
        })
        .await?;

    let current = client
        .get_settings(settings::GetSettingsRequest {
            shop_id: cli.shop_id.clone(),
        })
        .await
        .ok()
        .and_then(|answer| answer.into_inner().settings);
    let version = current.as_ref().map_or(0, |s| s.version);
    let registered = client
        .register_settings(settings::RegisterSettingsRequest {
            shop_id: cli.shop_id.clone(),
            expected_version: version,
            access_key: Some(secrecy::ExposeSecret::expose_secret(&cli.wms_access_key).to_owned()),
            detail: Some(settings::DetailSettings {
                wms_kind: settings::WmsKind::CommerceRobo as i32,
                endpoint_url: cli.wms_endpoint_url.clone(),
                data_targets: Some(settings::DataTargets {
                    shipment_instructions: true,
                    cancellations: true,
                    shipment_results: true,
                }),
                target_status_codes: vec!["ready_to_ship".into()],
                shipper_id: 1,
                delivery_method_id: 1,
                sync_period_days: 30,
                robot_id: 1,
                payment_mappings: vec![
                    settings::PaymentMapping {
                        payment_method_code: "card".into(),
                        wms_payment_method_id: 1,
                        delivery_company_id: 0,
                    },
                    settings::PaymentMapping {
                        payment_method_code: "cod".into(),
                        wms_payment_method_id: 2,
                        delivery_company_id: 5,
                    },
                ],
                header_free_fields: vec![settings::FreeFieldMapping {
                    slot: 1,
                    cart_field: "note".into(),
                }],
                line_free_fields: vec![],
            }),
        })
        .await?
        .into_inner();
    let version = registered.settings.map_or(version, |s| s.version);
    let check = client
        .check_connection(settings::CheckConnectionRequest {
            shop_id: cli.shop_id.clone(),
            access_key: None,
            endpoint_url: None,
        })
        .await?
        .into_inner();
    let outcome = check.check.as_ref().map(|c| c.outcome());
    anyhow::ensure!(
        outcome == Some(settings::ConnectionCheckOutcome::Ok),
        "connection check failed: {:?}",
        check.check
    );
    client
        .set_enabled(settings::SetEnabledRequest {
            shop_id: cli.shop_id.clone(),
            enabled: true,
            expected_version: check.version.max(version),
        })
        .await?;
    println!(
        "demo shop '{}' registered, checked and enabled",
        cli.shop_id
    );
    Ok(())
}

fn demo_order(shop_id: &str, n: u32) -> orders::Order {
    let now = chrono::Utc::now();
    let address = orders::Address {
        name: format!("山田 太郎 {n}"),
        kana: "ヤマダ タロウ".into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-1-1".into(),
        address2: String::new(),
        phone: "03-0000-0000".into(),
        email: format!("customer{n}@example.com"),
    };
    orders::Order {
        shop_id: shop_id.into(),
        order_no: format!("DEMO-{n:06}"),
        revision: 1,
        order_date: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        status_code: "ready_to_ship".into(),
        payment_method_code: if n.is_multiple_of(5) { "cod" } else { "card" }.into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: String::new(),
        delivery_time: String::new(),
        amounts: Some(orders::Amounts {
            products: 5400,
            shipping_fee: 600,
            cod_fee: 0,
            discount: 0,
            tax: 545,
            total: 6000,
        }),
        note: "demo order".into(),
        lines: vec![orders::LineItem {
            sku: "TSHIRT-RED-M".into(),
            name: "Tシャツ 赤 M".into(),
            quantity: 2,
            unit_price: 2700,
            options: Default::default(),
        }],
        extra: Default::default(),
    }
}
