use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use wmslink_platform::nats::Subjects;

/// Calls `on_change` with the shop of every `settings.{shop}.changed` message (e.g. to
/// [`invalidate`](crate::SettingsClient::invalidate) the shop and do what a change means to the
/// caller), one at a time, until `shutdown`. A plain core-NATS subscription, re-made after a
/// second when it cannot be made or ends: a missed message only costs the cache TTL.
///
/// The shop is the subject's token as sent; callers that need a valid `ShopId` parse it.
pub async fn watch_changes<F, Fut>(
    client: async_nats::Client,
    subjects: Subjects,
    mut on_change: F,
    shutdown: CancellationToken,
) where
    F: FnMut(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    loop {
        let mut subscription = match client.subscribe(subjects.settings_changed_all()).await {
            Ok(subscription) => subscription,
            Err(err) => {
                tracing::warn!(error = %err, "cannot subscribe to settings changes; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = subscription.next() => message,
            };
            let Some(message) = message else { break };
            if let Some(shop) = subjects.shop_of(message.subject.as_str()) {
                tracing::debug!(shop, "settings changed");
                on_change(shop.to_owned()).await;
            }
        }
    }
}
