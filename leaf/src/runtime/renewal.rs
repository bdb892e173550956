//! TLS upkeep of a running leaf: installs the generated CA into the trust stores (in the
//! background, so a slow store never delays the start), then renews the leaf certificate
//! before it lapses — new files for nats-server plus a reload, and a swap of the discovery
//! server's certificate. Supplied certificates are used as given and never touched.
//!
//! The schedule is pure ([`next_renewal_step`]): it reads the wall clock at each step and
//! sleeps at most [`MAX_RENEWAL_WAIT`] at a time, so a machine that slept through the
//! renewal time renews soon after it wakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use super::status::{LeafStatus, TrustStatus};
use super::supervisor::Command;
use crate::tls::{PreparedTls, SwappableServerCert, TrustStoreConfig, trust};

/// Longest single sleep between two looks at the clock.
pub(crate) const MAX_RENEWAL_WAIT: Duration = Duration::from_secs(3600);

/// What the renewal loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum RenewalStep {
    /// Renew now.
    RenewNow,
    /// Look again after this long.
    Wait(Duration),
}

/// The next step at wall-clock `now` for a certificate due at `renew_at`, when the last
/// attempt was `since_last_attempt` ago: renew once due, but never twice within
/// `min_interval`; otherwise wait until due, at most `max_wait`. Pure.
pub(crate) fn next_renewal_step(
    now: OffsetDateTime,
    renew_at: OffsetDateTime,
    since_last_attempt: Option<Duration>,
    min_interval: Duration,
    max_wait: Duration,
) -> RenewalStep {
    if now >= renew_at {
        return match since_last_attempt {
            Some(since) if since < min_interval => RenewalStep::Wait(min_interval - since),
            _ => RenewalStep::RenewNow,
        };
    }
    let until = Duration::try_from(renew_at - now).unwrap_or(Duration::ZERO);
    RenewalStep::Wait(until.min(max_wait))
}

/// Runs until aborted: trust installation, then renewals (generated material only).
pub(crate) async fn tls_upkeep(
    prepared: PreparedTls,
    trust_config: TrustStoreConfig,
    status: Arc<watch::Sender<LeafStatus>>,
    cert: Arc<SwappableServerCert>,
    commands: mpsc::Sender<Command>,
    min_interval: Duration,
) {
    let PreparedTls::Generated(generated) = prepared else {
        return;
    };
    let installed = tokio::task::spawn_blocking(move || {
        let state = trust::install_ca(generated.ca(), &trust_config);
        (generated, state)
    })
    .await;
    let mut generated = match installed {
        Ok((generated, state)) => {
            status.send_modify(|status| status.tls.trust = TrustStatus::Done(state));
            generated
        }
        Err(err) => {
            tracing::warn!(error = %err, "the trust-store installation task failed; the certificate will not be renewed");
            return;
        }
    };

    let mut last_attempt: Option<Instant> = None;
    loop {
        let step = next_renewal_step(
            OffsetDateTime::now_utc(),
            generated.next_renewal_at(),
            last_attempt.map(|at| at.elapsed()),
            min_interval,
            MAX_RENEWAL_WAIT,
        );
        if let RenewalStep::Wait(delay) = step {
            tokio::time::sleep(delay).await;
            continue;
        }
        last_attempt = Some(Instant::now());
        let renewed = tokio::task::spawn_blocking(move || {
            let result = generated.renew(OffsetDateTime::now_utc()).and_then(|leaf| leaf.certified_key());
            (generated, result)
        })
        .await;
        let (back, result) = match renewed {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "the certificate renewal task failed; the certificate will not be renewed");
                return;
            }
        };
        generated = back;
        match result {
            Ok(key) => {
                cert.swap(key);
                if commands.send(Command::Reload).await.is_err() {
                    return;
                }
                let material = generated.material();
                tracing::info!(not_after = %material.not_after, "renewed the WSS/discovery certificate");
                status.send_modify(|status| {
                    status.tls.material = material;
                    status.tls.renewals += 1;
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not renew the leaf certificate; will retry");
                let message = format!("could not renew the leaf certificate: {err}");
                status.send_modify(|status| status.last_error = Some(message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn waits_until_due_in_bounded_steps() {
        let now = datetime!(2026-11-22 10:00 UTC);
        assert_eq!(
            next_renewal_step(now, datetime!(2026-11-22 10:10 UTC), None, MIN, MAX),
            RenewalStep::Wait(Duration::from_secs(600))
        );
        assert_eq!(next_renewal_step(now, datetime!(2026-11-27 10:00 UTC), None, MIN, MAX), RenewalStep::Wait(MAX));
    }

    #[test]
    fn renews_when_due_but_not_twice_within_the_minimum_interval() {
        let now = datetime!(2026-11-22 10:00 UTC);
        let due = datetime!(2026-11-22 09:00 UTC);
        assert_eq!(next_renewal_step(now, due, None, MIN, MAX), RenewalStep::RenewNow);
        assert_eq!(next_renewal_step(now, now, Some(Duration::from_secs(61)), MIN, MAX), RenewalStep::RenewNow);
        assert_eq!(
            next_renewal_step(now, due, Some(Duration::from_secs(20)), MIN, MAX),
            RenewalStep::Wait(Duration::from_secs(40))
        );
    }
}
