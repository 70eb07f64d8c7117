//! The operations of the settings service, independent of gRPC: each write runs in one
//! transaction that locks the shop's row, checks the expected version, validates, saves, bumps
//! the version and enqueues `SettingsChanged`, then wakes the outbox relay after commit.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tracing::Instrument;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::RelayWaker;
use wmslink_platform::secrets::{self, KeyRing, Sealed};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::settings::v1 as pb;
use wmslink_wms_client::{RateLimiter, WmsClientConfig};

use crate::domain::catalog::{catalog_blockers, validate_catalog};
use crate::domain::validation::{self, RegisterContext, UrlProblem};
use crate::domain::{CheckOutcome, OrderStatus, enable_switch};
use crate::errors::SettingsError;
use crate::events::{self, Change};
use crate::in_flight::InFlightCheck;
use crate::passed_checks::PassedChecks;
use crate::store::{self, StoredSettings};

/// Extra time a connection check may spend waiting for the key's rate-limit budget before it
/// is reported as rate limited.
const MAX_LIMITER_WAIT: Duration = Duration::from_secs(5);

/// `ListShops` page size when none is asked for, and the largest one served.
pub const DEFAULT_SHOP_PAGE: u32 = 100;
pub const MAX_SHOP_PAGE: u32 = 500;

/// Stored settings with the key masked, ready to be shown.
#[derive(Debug, Clone)]
pub struct SettingsView {
    pub shop_id: ShopId,
    pub settings: StoredSettings,
    pub access_key_masked: String,
}

/// The answer to a connection check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub outcome: CheckOutcome,
    pub detail: String,
    pub checked_at: DateTime<Utc>,
    /// The check was made with the key and URL stored now (and recorded).
    pub current: bool,
    pub recorded: bool,
    pub version: i64,
}

pub struct SettingsService {
    pool: PgPool,
    keys: KeyRing,
    subjects: Subjects,
    relay: RelayWaker,
    wms: WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    /// The budget of connection checks against URLs other than the registered one.
    probe_limiter: Arc<dyn RateLimiter>,
    /// S2: passed checks of a given key and URL, counted when exactly those are registered.
    passed_checks: PassedChecks,
    /// Asked before a shop's endpoint URL changes.
    in_flight: InFlightCheck,
}

fn not_found(shop: &ShopId) -> SettingsError {
    SettingsError::NotFound(format!("no settings are registered for shop {shop}"))
}

fn stale(shop: &ShopId, expected: i64, current: i64) -> SettingsError {
    SettingsError::StaleVersion {
        shop: shop.to_string(),
        expected,
        current,
    }
}

impl SettingsService {
    pub fn new(
        pool: PgPool,
        keys: KeyRing,
        subjects: Subjects,
        relay: RelayWaker,
        wms: WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
        probe_limiter: Arc<dyn RateLimiter>,
    ) -> Self {
        Self {
            in_flight: InFlightCheck::off(),
            pool,
            keys,
            subjects,
            relay,
            wms,
            limiter,
            probe_limiter,
            passed_checks: PassedChecks::default(),
        }
    }

    /// Asks `in_flight` before a shop's endpoint URL changes (off by default).
    pub fn with_in_flight_check(mut self, in_flight: InFlightCheck) -> Self {
        self.in_flight = in_flight;
        self
    }

    fn open_key(&self, shop: &ShopId, sealed: &Sealed) -> Result<SecretString, SettingsError> {
        self.keys
            .open(sealed, shop.as_str().as_bytes())
            .map_err(|_| SettingsError::KeyUnreadable {
                shop: shop.to_string(),
            })
    }

    /// The keyed fingerprints of an endpoint URL and access key, the active master key's first
    /// (`KeyRing::fingerprints`). Derived from the key: stored, never logged.
    fn credentials_fingerprints(&self, endpoint_url: &str, key: &SecretString) -> Vec<Vec<u8>> {
        self.keys
            .fingerprints(&[endpoint_url.as_bytes(), key.expose_secret().as_bytes()])
    }

    /// Two shops on one WMS account: whether another enabled shop uses the same endpoint URL
    /// and access key as `shop` is about to, compared by keyed fingerprint (only keys whose
    /// fingerprint is not stored yet are opened). Stores `shop`'s fingerprint, and holds a lock
    /// on it until the transaction ends so two shops switched on at once see each other.
    async fn shares_an_enabled_account(
        &self,
        tx: &mut sqlx::PgConnection,
        shop: &ShopId,
        endpoint_url: &str,
        key: &SecretString,
    ) -> Result<bool, SettingsError> {
        let fingerprints = self.credentials_fingerprints(endpoint_url, key);
        let Some(active) = fingerprints.first() else {
            return Ok(false);
        };
        store::lock_fingerprint(tx, active).await?;
        store::set_credentials_fingerprint(tx, shop, Some(active)).await?;
        for (other, url, sealed) in store::enabled_without_fingerprint(tx, shop).await? {
            let Ok(other) = ShopId::parse(&other) else {
                continue;
            };
            match self.open_key(&other, &sealed) {
                Ok(other_key) => {
                    let made = self.credentials_fingerprints(&url, &other_key);
                    store::set_credentials_fingerprint(tx, &other, made.first().map(Vec::as_slice))
                        .await?;
                }
                Err(err) => {
                    tracing::warn!(shop_id = %other, error = %err, "cannot fingerprint the stored access key");
                }
            }
        }
        Ok(store::enabled_shop_with_fingerprint(tx, shop, &fingerprints).await?)
    }

    fn view(&self, shop: &ShopId, settings: StoredSettings) -> SettingsView {
        let access_key_masked = match self.open_key(shop, &settings.access_key) {
            Ok(key) => secrets::mask(&key),
            Err(err) => {
                tracing::warn!(shop_id = %shop, error = %err, "cannot mask the stored access key");
                "********".to_owned()
            }
        };
        SettingsView {
            shop_id: shop.clone(),
            settings,
            access_key_masked,
        }
    }

    pub async fn get(&self, shop: &ShopId) -> Result<SettingsView, SettingsError> {
        let mut conn = self.pool.acquire().await?;
        let settings = store::load_settings(&mut conn, shop)
            .await?
            .ok_or_else(|| not_found(shop))?;
        Ok(self.view(shop, settings))
    }

    /// S3 ⑭: one atomic save.
    pub async fn register(
        &self,
        shop: &ShopId,
        expected_version: i64,
        detail: Option<&pb::DetailSettings>,
        access_key: Option<&str>,
    ) -> Result<SettingsView, SettingsError> {
        let mut tx = self.pool.begin().await?;
        let version = store::lock_or_create_shop(&mut tx, shop).await?;
        let existing = store::load_settings(&mut tx, shop).await?;
        let version_ok =
            expected_version == version || (existing.is_none() && expected_version == 0);
        if !version_ok {
            return Err(stale(shop, expected_version, version));
        }
        let catalog = store::load_catalog(&mut tx, shop).await?;
        let registration = validation::validate_registration(
            detail,
            access_key,
            &RegisterContext {
                catalog: &catalog,
                wms: &self.wms,
                stored_endpoint_url: existing.as_ref().map(|e| e.detail.endpoint_url.as_str()),
            },
        )
        .map_err(SettingsError::Invalid)?;

        // The key: keep the stored seal when the same key is sent again, so that re-sending it
        // does not void the connection check.
        let (sealed, key_changed) = match (&registration.access_key, &existing) {
            (None, Some(existing)) => (existing.access_key.clone(), false),
            (Some(new_key), existing) => {
                let same = existing.as_ref().is_some_and(|existing| {
                    self.open_key(shop, &existing.access_key)
                        .map(|old| {
                            bool::from(
                                old.expose_secret()
                                    .as_bytes()
                                    .ct_eq(new_key.expose_secret().as_bytes()),
                            )
                        })
                        .unwrap_or(false)
                });
                match existing {
                    Some(existing) if same => (existing.access_key.clone(), false),
                    _ => (
                        self.keys
                            .seal(new_key, shop.as_str().as_bytes())
                            .map_err(SettingsError::Seal)?,
                        true,
                    ),
                }
            }
            (None, None) => {
                // validate_registration refuses a first registration without a key.
                return Err(SettingsError::invalid(
                    "access_key",
                    "required on the first registration",
                ));
            }
        };
        let detail = registration.detail;
        // The shipments in doubt and the cancellations pending can only be settled at the
        // endpoint they were sent to: the endpoint waits until there are none.
        if let Some(existing) = &existing
            && existing.detail.endpoint_url != detail.endpoint_url
            && let Some(in_flight) =
                self.in_flight
                    .ask(shop)
                    .await
                    .map_err(|source| SettingsError::InFlightUnknown {
                        shop: shop.to_string(),
                        source,
                    })?
            && let Some(blocker) = in_flight.blocker()
        {
            return Err(SettingsError::Precondition {
                context: format!("cannot change the endpoint URL of shop {shop} now"),
                blockers: vec![blocker],
            });
        }
        let (credentials_rev, credentials_changed, enabled) = match &existing {
            None => (1, true, false),
            Some(existing) => {
                let changed = key_changed || existing.detail.endpoint_url != detail.endpoint_url;
                (
                    existing.credentials_rev + i64::from(changed),
                    changed,
                    existing.enabled,
                )
            }
        };
        // S2: the new key and URL were checked (and passed) just before being registered. S4:
        // that also lets a leaked key be rotated while the integration stays on.
        let passed_check = if credentials_changed {
            registration
                .access_key
                .as_ref()
                .and_then(|key| self.passed_checks.take(shop, &detail.endpoint_url, key))
        } else {
            None
        };
        if enabled {
            let blockers = enable_switch::register_while_enabled_blockers(
                credentials_changed && passed_check.is_none(),
                &detail,
                &catalog,
            );
            if !blockers.is_empty() {
                return Err(SettingsError::Precondition {
                    context: format!(
                        "cannot register the settings of shop {shop} while the integration is enabled"
                    ),
                    blockers,
                });
            }
        }

        store::save_settings(&mut tx, shop, &detail, &sealed, credentials_rev).await?;
        if credentials_changed {
            // A new key or URL while enabled must not land on another enabled shop's WMS
            // account; otherwise the fingerprint is made when the shop is switched on.
            match &registration.access_key {
                Some(key) if enabled => {
                    if self
                        .shares_an_enabled_account(&mut tx, shop, &detail.endpoint_url, key)
                        .await?
                    {
                        return Err(SettingsError::Precondition {
                            context: format!(
                                "cannot register the settings of shop {shop} while the integration is enabled"
                            ),
                            blockers: vec![enable_switch::shared_account_blocker()],
                        });
                    }
                }
                _ => store::set_credentials_fingerprint(&mut tx, shop, None).await?,
            }
        }
        if let Some(passed) = passed_check {
            store::record_check(
                &mut tx,
                shop,
                credentials_rev,
                CheckOutcome::Ok,
                &passed.detail,
                passed.checked_at,
            )
            .await?;
        }
        let new_version = store::bump_version(&mut tx, shop).await?;
        events::enqueue_changed(
            &mut tx,
            &self.subjects,
            shop,
            new_version,
            enabled,
            Change::Registered,
        )
        .await?;
        let saved = store::load_settings(&mut tx, shop)
            .await?
            .ok_or_else(|| not_found(shop))?;
        tx.commit().await?;
        self.relay.wake();
        tracing::info!(
            shop_id = %shop,
            version = new_version,
            credentials_changed,
            "settings registered"
        );
        Ok(self.view(shop, saved))
    }

    /// S2: checks the stored key and URL (and records the outcome), or a given pair (without
    /// recording it).
    pub async fn check_connection(
        &self,
        shop: &ShopId,
        access_key: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<CheckResult, SettingsError> {
        let trying = access_key.is_some() || endpoint_url.is_some();
        let mut violations = FieldViolations::new();
        let given_key = access_key.and_then(|raw| match validation::check_access_key(raw) {
            Ok(key) => Some(key),
            Err(why) => {
                violations.add("access_key", why);
                None
            }
        });
        let given_url =
            endpoint_url.and_then(|raw| match validation::parse_endpoint_url(raw, &self.wms) {
                Ok(url) => Some(url),
                // The client refuses it and the outcome says so (refused_by_policy).
                Err(UrlProblem::HttpNotAllowed(_) | UrlProblem::HostNotAllowed(_)) => {
                    Some(raw.trim().to_owned())
                }
                Err(UrlProblem::Malformed(why)) => {
                    violations.add("endpoint_url", why);
                    None
                }
            });
        if !violations.is_empty() {
            return Err(SettingsError::Invalid(violations));
        }

        let stored = {
            let mut conn = self.pool.acquire().await?;
            store::load_settings(&mut conn, shop).await?
        };
        let (key, url, credentials_rev) = match (&stored, given_key, given_url) {
            (_, Some(key), Some(url)) => (key, url, None),
            (Some(stored), key, url) => {
                let url = url.unwrap_or_else(|| stored.detail.endpoint_url.clone());
                let key = match key {
                    Some(key) => key,
                    // I7: the stored key never goes to an endpoint it was not registered with.
                    None if url != stored.detail.endpoint_url => {
                        return Err(SettingsError::invalid(
                            "access_key",
                            validation::KEY_REQUIRED_FOR_NEW_URL,
                        ));
                    }
                    None => self.open_key(shop, &stored.access_key)?,
                };
                (key, url, (!trying).then_some(stored.credentials_rev))
            }
            (None, _, _) => {
                return Err(SettingsError::NotFound(format!(
                    "no settings are registered for shop {shop}; register them, or give both access_key and endpoint_url to try a pair"
                )));
            }
        };

        let span = tracing::info_span!("connection_check", shop_id = %shop, recorded = credentials_rev.is_some());
        let deadline = self.wms.request_timeout() + self.wms.connect_timeout() + MAX_LIMITER_WAIT;
        // Only a check against the registered endpoint may draw from (or, with a 429, push
        // back) the key's shared budget; a check of any other URL gets a bucket of its own,
        // so a hostile endpoint cannot freeze the shop's real calls.
        let registered_endpoint = stored
            .as_ref()
            .is_some_and(|stored| stored.detail.endpoint_url == url);
        let limiter = if registered_endpoint {
            self.limiter.clone()
        } else {
            self.probe_limiter.clone()
        };
        // A check of a given key and URL is not recorded; when it passes, it is remembered
        // for registering exactly that pair (S2: the operator never checks twice).
        let tried_key = credentials_rev.is_none().then(|| key.clone());
        // Cut short while still waiting for the key's budget: RATE_LIMITED; once the request
        // went out, a WMS that has not answered is a TIMEOUT (also after a wait for the budget).
        let report =
            wmslink_wms_client::check_connection_within(&url, key, &self.wms, limiter, deadline)
                .instrument(span.clone())
                .await;
        // Microseconds, as PostgreSQL stores it, so the answer equals what is read back later.
        let checked_at = Utc::now().trunc_subsecs(6);
        let (outcome, detail) = (CheckOutcome::from(report.status), report.detail);
        span.in_scope(|| tracing::info!(outcome = outcome.as_str(), "connection checked"));

        let Some(credentials_rev) = credentials_rev else {
            if let Some(tried_key) = tried_key.filter(|_| outcome == CheckOutcome::Ok) {
                self.passed_checks
                    .remember(shop, &url, &tried_key, &detail, checked_at);
            }
            let version = {
                let mut conn = self.pool.acquire().await?;
                store::shop_version(&mut conn, shop).await?
            };
            return Ok(CheckResult {
                outcome,
                detail,
                checked_at,
                current: false,
                recorded: false,
                version,
            });
        };

        let mut tx = self.pool.begin().await?;
        let Some(version) = store::lock_shop(&mut tx, shop).await? else {
            return Err(not_found(shop));
        };
        let recorded =
            store::record_check(&mut tx, shop, credentials_rev, outcome, &detail, checked_at)
                .await?;
        if !recorded {
            // The key or URL changed while the WMS was being called: this outcome is about
            // credentials that are no longer stored.
            tx.rollback().await?;
            return Ok(CheckResult {
                outcome,
                detail,
                checked_at,
                current: false,
                recorded: false,
                version,
            });
        }
        let new_version = store::bump_version(&mut tx, shop).await?;
        let enabled = stored.as_ref().is_some_and(|s| s.enabled);
        events::enqueue_changed(
            &mut tx,
            &self.subjects,
            shop,
            new_version,
            enabled,
            Change::ConnectionChecked,
        )
        .await?;
        tx.commit().await?;
        self.relay.wake();
        Ok(CheckResult {
            outcome,
            detail,
            checked_at,
            current: true,
            recorded: true,
            version: new_version,
        })
    }

    /// S4: the enable switch.
    pub async fn set_enabled(
        &self,
        shop: &ShopId,
        enabled: bool,
        expected_version: i64,
    ) -> Result<SettingsView, SettingsError> {
        let mut tx = self.pool.begin().await?;
        let Some(version) = store::lock_shop(&mut tx, shop).await? else {
            return Err(not_found(shop));
        };
        let settings = store::load_settings(&mut tx, shop)
            .await?
            .ok_or_else(|| not_found(shop))?;
        // S4: switching off is the emergency stop: it works whatever version the caller saw
        // (nothing can be lost by it); switching on needs the current version.
        if enabled && expected_version != version {
            return Err(stale(shop, expected_version, version));
        }
        if settings.enabled == enabled {
            return Ok(self.view(shop, settings));
        }
        if enabled {
            let catalog = store::load_catalog(&mut tx, shop).await?;
            let mut blockers = enable_switch::enable_blockers(
                settings.check.as_ref(),
                settings.credentials_rev,
                &settings.detail,
                &catalog,
            );
            let key = self.open_key(shop, &settings.access_key)?;
            if self
                .shares_an_enabled_account(&mut tx, shop, &settings.detail.endpoint_url, &key)
                .await?
            {
                blockers.push(enable_switch::shared_account_blocker());
            }
            if !blockers.is_empty() {
                return Err(SettingsError::Precondition {
                    context: format!("cannot enable the integration of shop {shop}"),
                    blockers,
                });
            }
        }
        store::set_enabled(&mut tx, shop, enabled).await?;
        let new_version = store::bump_version(&mut tx, shop).await?;
        let change = if enabled {
            Change::Enabled
        } else {
            Change::Disabled
        };
        events::enqueue_changed(&mut tx, &self.subjects, shop, new_version, enabled, change)
            .await?;
        let saved = store::load_settings(&mut tx, shop)
            .await?
            .ok_or_else(|| not_found(shop))?;
        tx.commit().await?;
        self.relay.wake();
        tracing::info!(shop_id = %shop, version = new_version, enabled, "integration switched");
        Ok(self.view(shop, saved))
    }

    /// Replaces the shop's order-status catalog; refuses to break the registered settings.
    pub async fn put_catalog(
        &self,
        shop: &ShopId,
        statuses: &[pb::OrderStatus],
        expected_version: Option<i64>,
    ) -> Result<(Vec<OrderStatus>, i64), SettingsError> {
        let catalog = validate_catalog(statuses).map_err(SettingsError::Invalid)?;
        let mut tx = self.pool.begin().await?;
        let version = store::lock_or_create_shop(&mut tx, shop).await?;
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(stale(shop, expected, version));
        }
        let old = store::load_catalog(&mut tx, shop).await?;
        if old == catalog {
            tx.rollback().await?;
            return Ok((old, version));
        }
        let settings = store::load_settings(&mut tx, shop).await?;
        if let Some(settings) = &settings {
            let blockers = catalog_blockers(&settings.detail, settings.enabled, &catalog);
            if !blockers.is_empty() {
                return Err(SettingsError::Precondition {
                    context: format!(
                        "the order-status catalog of shop {shop} would break its registered settings"
                    ),
                    blockers,
                });
            }
        }
        store::replace_catalog(&mut tx, shop, &catalog).await?;
        let new_version = store::bump_version(&mut tx, shop).await?;
        let enabled = settings.as_ref().is_some_and(|s| s.enabled);
        events::enqueue_changed(
            &mut tx,
            &self.subjects,
            shop,
            new_version,
            enabled,
            Change::StatusCatalog,
        )
        .await?;
        tx.commit().await?;
        self.relay.wake();
        tracing::info!(shop_id = %shop, version = new_version, statuses = catalog.len(), "order-status catalog replaced");
        Ok((catalog, new_version))
    }

    pub async fn list_catalog(
        &self,
        shop: &ShopId,
    ) -> Result<(Vec<OrderStatus>, i64), SettingsError> {
        let mut tx = self.pool.begin().await?;
        let version = store::shop_version(&mut tx, shop).await?;
        let catalog = store::load_catalog(&mut tx, shop).await?;
        tx.commit().await?;
        Ok((catalog, version))
    }

    /// The sealed key and URL, for services that call the WMS.
    pub async fn credentials(&self, shop: &ShopId) -> Result<StoredSettings, SettingsError> {
        let mut conn = self.pool.acquire().await?;
        store::load_settings(&mut conn, shop)
            .await?
            .ok_or_else(|| not_found(shop))
    }

    /// One page of the registered shops after `after` (in shop id order), and the id to start
    /// the next page after (`None` on the last page).
    pub async fn list_shops(
        &self,
        enabled_only: bool,
        after: Option<&ShopId>,
        page_size: u32,
    ) -> Result<(Vec<store::ShopRow>, Option<String>), SettingsError> {
        let page_size = match page_size {
            0 => DEFAULT_SHOP_PAGE,
            n => n.min(MAX_SHOP_PAGE),
        };
        let mut conn = self.pool.acquire().await?;
        // One more than asked for tells whether another page follows.
        let mut shops =
            store::list_shops(&mut conn, enabled_only, after, i64::from(page_size) + 1).await?;
        let next = if shops.len() > page_size as usize {
            shops.truncate(page_size as usize);
            shops.last().map(|shop| shop.shop_id.clone())
        } else {
            None
        };
        Ok((shops, next))
    }
}
