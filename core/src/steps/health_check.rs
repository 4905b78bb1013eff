//! `health-check`: each moved service answers its HTTP check N times in a row, and its target
//! group's targets are healthy.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;

use crate::aws::{aws, Clients};
use crate::config::HealthConfig;
use crate::model::{HealthCheckInput, HealthReport, ServiceHealth};
use crate::StepError;

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The status code.
    pub status: u16,
    /// The body (at most the first 64 KiB).
    pub body: String,
    /// How long the request took.
    pub latency_ms: u64,
}

/// Sends health check requests (a trait so tests can answer without a network).
pub trait Prober: Send + Sync {
    /// GETs `url` with an optional Host header, giving up after `timeout`.
    fn get<'a>(
        &'a self,
        url: &'a str,
        host: Option<&'a str>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Probe, String>> + Send + 'a>>;
}

/// The real prober. There is no `Default`: a default reqwest client follows redirects.
///
/// With a Host name and an `https` URL, the TLS session is made for that name — SNI, and the
/// certificate verified for it — while the connection goes to the URL's address (the load
/// balancer's): that is what a browser asking for the name gets. Sending only a Host header
/// over a session made for the load balancer's own DNS name would fail verification against
/// a certificate for the service's name, or reach the listener's default certificate
/// instead of the one its SNI rules pick.
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: reqwest::Client,
    roots: Vec<reqwest::Certificate>,
}

impl HttpProber {
    /// A prober that never follows redirects (a 302 to a login page is not "healthy") and
    /// trusts the platform's roots. If that client cannot be built, this says why — it never
    /// falls back to a default client, which would follow them.
    pub fn new() -> Result<Self, String> {
        Self::with_roots(Vec::new())
    }

    /// The same, also trusting `roots` (a private CA's certificates).
    pub fn with_roots(roots: Vec<reqwest::Certificate>) -> Result<Self, String> {
        let client = Self::builder(&roots).build().map_err(client_error)?;
        Ok(Self { client, roots })
    }

    fn builder(roots: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if roots.is_empty() {
            builder
        } else {
            builder.tls_certs_merge(roots.iter().cloned())
        }
    }

    /// For `https` with a Host name: `url` addressed to that name, and a client that connects
    /// to the URL's own address (resolved here) for it. `None` for anything else.
    async fn for_host(
        &self,
        url: &str,
        host: &str,
    ) -> Result<Option<(reqwest::Client, reqwest::Url)>, String> {
        let mut named = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
        if named.scheme() != "https" {
            return Ok(None);
        }
        let address = named
            .host_str()
            .ok_or_else(|| format!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = named.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((address.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {address}: {e}"))?
            .collect();
        named
            .set_host(Some(host))
            .map_err(|e| format!("host {host:?} is not a host name: {e}"))?;
        // The override is looked up by the URL's host as the URL holds it (lower case,
        // punycode): key it by that, not by the configured spelling.
        let name = named
            .host_str()
            .ok_or_else(|| format!("host {host:?} is not a host name"))?
            .to_owned();
        let client = Self::builder(&self.roots)
            .resolve_to_addrs(&name, &addrs)
            .build()
            .map_err(client_error)?;
        Ok(Some((client, named)))
    }
}

fn client_error(e: reqwest::Error) -> String {
    format!("cannot build the health check's HTTP client: {e}")
}

impl Prober for HttpProber {
    fn get<'a>(
        &'a self,
        url: &'a str,
        host: Option<&'a str>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Probe, String>> + Send + 'a>> {
        Box::pin(async move {
            // One deadline for the whole probe — resolving the load balancer's address,
            // connecting, the answer and its body — so that check-config's budget
            // (passes × timeout_ms + …) holds.
            tokio::time::timeout(timeout, self.probe(url, host, timeout))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
        })
    }
}

impl HttpProber {
    async fn probe(
        &self,
        url: &str,
        host: Option<&str>,
        timeout: Duration,
    ) -> Result<Probe, String> {
        let start = Instant::now();
        let request = match host {
            Some(h) => match self.for_host(url, h).await? {
                Some((client, named)) => client.get(named),
                None => self.client.get(url),
            }
            .header(reqwest::header::HOST, h),
            None => self.client.get(url),
        }
        .timeout(timeout);
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else {
                // The URL is left out (the caller names it, and for https with a host it
                // is the rewritten one); the chain says why (a certificate not valid for
                // the name, say).
                let e = e.without_url();
                let mut text = format!("request failed: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into_owned();
        Ok(Probe {
            status,
            body,
            latency_ms: start.elapsed().as_millis() as u64,
        })
    }
}

/// Checks every service of the release that has a health check or a target group.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn health_check(
    clients: &Clients,
    prober: &dyn Prober,
    input: HealthCheckInput,
) -> Result<HealthReport, StepError> {
    crate::alarms::check(
        &clients.cloudwatch,
        &input.release.alarms,
        "in ALARM at the health check",
    )
    .await?;
    let mut services = Vec::new();
    for svc in &input.release.services {
        let mut report = ServiceHealth {
            service: svc.name.clone(),
            passes: 0,
            max_latency_ms: 0,
            targets: None,
        };
        if let Some(h) = &svc.health {
            let (passes, max_latency) = http_check(prober, &svc.name, h).await?;
            report.passes = passes;
            report.max_latency_ms = max_latency;
        }
        if let Some(tg) = &svc.target_group_arn {
            let tg = live_target_group(clients, svc, tg).await?;
            report.targets = Some(target_health(clients, &svc.name, &tg).await?);
        }
        tracing::info!(service = %svc.name, passes = report.passes, targets = ?report.targets, "healthy");
        services.push(report);
    }
    Ok(HealthReport { services })
}

/// The target group the service's tasks are registered with now. With ECS's blue/green,
/// linear and canary deployments the service's two target groups swap roles at every
/// deployment (the new revision registers with the alternate one, which then becomes the
/// service's): the configured `target_group_arn` names either, and the one the service's
/// load balancer lists now (`loadBalancers[].targetGroupArn`) is checked.
async fn live_target_group(
    clients: &Clients,
    svc: &crate::model::ServiceRelease,
    configured: &str,
) -> Result<String, StepError> {
    // A service switched back to rolling may still use the alternate one.
    if svc.staged.is_none() && !svc.to_rolling {
        return Ok(configured.to_owned());
    }
    let found = super::describe_services(
        &clients.ecs,
        &svc.cluster,
        std::slice::from_ref(&svc.ecs_service),
    )
    .await
    .map_err(|e| e.step(|m| StepError::HealthCheckFailed(format!("service {}: {m}", svc.name))))?;
    let live = found.into_iter().flatten().next().and_then(|service| {
        service.load_balancers().iter().find_map(|lb| {
            let alternate = lb
                .advanced_configuration()
                .and_then(|a| a.alternate_target_group_arn());
            (lb.target_group_arn() == Some(configured) || alternate == Some(configured))
                .then(|| lb.target_group_arn().map(str::to_owned))
                .flatten()
        })
    });
    Ok(live.unwrap_or_else(|| configured.to_owned()))
}

/// Whether a Lambda event is ECS invoking a lifecycle hook (Developer Guide, "Lambda hooks":
/// `executionId`, `lifecycleStage`, `resourceArn`, `executionDetails`).
pub fn is_lifecycle_hook(event: &serde_json::Value) -> bool {
    event.get("lifecycleStage").is_some() && event.get("executionDetails").is_some()
}

/// How many times the hook looks again after a failed check before it answers FAILED, and
/// the first wait (doubled each time): as the HealthCheck state retries
/// `Slipway.HealthCheckFailed` (3 times, 10 s then ×2), so that one bad answer from a
/// service still warming up does not roll a good deployment back.
pub const HOOK_RETRIES: u64 = 3;
const HOOK_FIRST_DELAY_SECONDS: u64 = 10;

/// health-check as a service's lifecycle hook: ECS invokes it at POST_TEST_TRAFFIC_SHIFT of
/// a blue/green, linear or canary deployment — the new revision takes the test traffic, no
/// production traffic has moved — with the check update-services put in `hookDetails`
/// (`{"slipway": {"service", "health"}}`: the service's health check through the test
/// listener). The answer is `{"hookStatus": "SUCCEEDED"}` when the check passes. When it
/// does not, `IN_PROGRESS` with a `callBackDelay` and the attempt counted in the
/// `hookDetails` ECS passes back on its next invocation (Developer Guide, "Lambda hooks for
/// Amazon ECS service deployments"), [`HOOK_RETRIES`] times; then `FAILED`, and ECS rolls the
/// deployment back before production traffic moves. An event without a Slipway check fails
/// at once.
pub async fn lifecycle_hook(prober: &dyn Prober, event: &serde_json::Value) -> serde_json::Value {
    let stage = event["lifecycleStage"].as_str().unwrap_or_default();
    let slipway = &event["hookDetails"][super::HOOK_DETAILS_KEY];
    let service = slipway["service"].as_str().unwrap_or("(unnamed)");
    let attempt = slipway["attempt"].as_u64().unwrap_or(1).max(1);
    let check: Option<HealthConfig> = serde_json::from_value(slipway["health"].clone()).ok();
    let Some(h) = check else {
        tracing::error!(
            stage,
            "hookDetails carry no Slipway health check: failing the hook"
        );
        return serde_json::json!({ "hookStatus": "FAILED" });
    };
    match http_check(prober, service, &h).await {
        Ok((passes, max_latency_ms)) => {
            tracing::info!(
                service,
                stage,
                attempt,
                passes,
                max_latency_ms,
                "healthy through the test listener"
            );
            serde_json::json!({ "hookStatus": "SUCCEEDED" })
        }
        Err(e) if attempt <= HOOK_RETRIES => {
            let delay = HOOK_FIRST_DELAY_SECONDS << (attempt - 1);
            tracing::warn!(service, stage, attempt, delay, error = %e, "unhealthy through the test listener: looking again");
            let mut details = slipway.clone();
            details["attempt"] = serde_json::json!(attempt + 1);
            serde_json::json!({
                "hookStatus": "IN_PROGRESS",
                "callBackDelay": delay,
                "hookDetails": { super::HOOK_DETAILS_KEY: details },
            })
        }
        Err(e) => {
            tracing::warn!(service, stage, attempt, error = %e, "unhealthy through the test listener: ECS rolls back");
            serde_json::json!({ "hookStatus": "FAILED" })
        }
    }
}

/// One turn of the bake's alarm watch (health-check with `bake` in its input, the
/// `WatchBake` loop): the alarms are checked (`Slipway.AlarmTriggered` if one is in ALARM),
/// and the answer is the watch after the last wait — what remains of the bake and the next
/// wait, 0 when the bake is over (the loop then runs the health check after the bake).
#[tracing::instrument(skip_all, fields(release = %release.id))]
pub async fn watch_bake(
    clients: &Clients,
    release: &crate::model::Release,
    watch: crate::model::BakeWatch,
) -> Result<crate::model::BakeWatch, StepError> {
    crate::alarms::check(
        &clients.cloudwatch,
        &release.alarms,
        "in ALARM during the bake",
    )
    .await?;
    let next = watch.next();
    tracing::info!(remaining = next.remaining_seconds, "baking");
    Ok(next)
}

/// `passes` consecutive good answers, or the first bad one as the error.
async fn http_check(
    prober: &dyn Prober,
    service: &str,
    h: &HealthConfig,
) -> Result<(u32, u64), StepError> {
    let mut max_latency = 0;
    let host = h.host.as_deref();
    let shown = match host {
        Some(host) => format!("GET {} (Host {host})", h.url),
        None => format!("GET {}", h.url),
    };
    for n in 1..=h.passes {
        let probe = prober
            .get(&h.url, host, Duration::from_millis(h.timeout_ms))
            .await
            .map_err(|e| {
                StepError::HealthCheckFailed(format!(
                    "service {service}: {shown}: {e} (after {} passes)",
                    n - 1
                ))
            })?;
        let excerpt: String = probe.body.chars().take(200).collect();
        if probe.status != h.expect_status {
            return Err(StepError::HealthCheckFailed(format!(
                "service {service}: {shown} answered {} in {} ms, expected {}; body: {excerpt:?}",
                probe.status, probe.latency_ms, h.expect_status
            )));
        }
        if let Some(needle) = &h.body_contains {
            if !probe.body.contains(needle.as_str()) {
                return Err(StepError::HealthCheckFailed(format!(
                    "service {service}: {shown} answered {} in {} ms without {needle:?} in its body: {excerpt:?}",
                    probe.status, probe.latency_ms
                )));
            }
        }
        max_latency = max_latency.max(probe.latency_ms);
        if n < h.passes {
            super::sleep(Duration::from_millis(h.interval_ms)).await;
        }
    }
    Ok((h.passes, max_latency))
}

/// (healthy, all) targets; any unhealthy target, or none at all, fails.
async fn target_health(
    clients: &Clients,
    service: &str,
    tg: &str,
) -> Result<(usize, usize), StepError> {
    let out = clients
        .elbv2
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(aws("elasticloadbalancing:DescribeTargetHealth"))
        .map_err(|e| e.step(|m| StepError::HealthCheckFailed(format!("service {service}: {m}"))))?;
    let all = out.target_health_descriptions();
    let healthy = all
        .iter()
        .filter(|d| {
            d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
        })
        .count();
    let unhealthy: Vec<String> = all
        .iter()
        .filter_map(|d| {
            let h = d.target_health()?;
            (h.state() == Some(&TargetHealthStateEnum::Unhealthy)).then(|| {
                format!(
                    "{}:{} {}",
                    d.target().and_then(|t| t.id()).unwrap_or_default(),
                    d.target().and_then(|t| t.port()).unwrap_or_default(),
                    h.reason().map(|r| r.as_str()).unwrap_or_default()
                )
            })
        })
        .collect();
    if !unhealthy.is_empty() || healthy == 0 {
        return Err(StepError::HealthCheckFailed(format!(
            "service {service}: target group {tg}: {healthy} of {} targets healthy{}",
            all.len(),
            if unhealthy.is_empty() {
                String::new()
            } else {
                format!("; unhealthy: {}", unhealthy.join(", "))
            }
        )));
    }
    Ok((healthy, all.len()))
}

#[cfg(test)]
mod redirect_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A 302 is what the prober reports, not the page it points to: a service that sends its
    /// health path to a login page is not healthy.
    #[tokio::test]
    async fn the_prober_reports_a_redirect_instead_of_following_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // Any request: /health redirects to /login, which would answer 200.
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer = if request.starts_with("GET /health ") {
                    "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                };
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        let prober = HttpProber::new().expect("client");
        let probe = prober
            .get(
                &format!("http://127.0.0.1:{port}/health"),
                None,
                Duration::from_secs(5),
            )
            .await
            .expect("an answer");
        server.abort();
        assert_eq!(probe.status, 302, "{probe:?}");
        assert!(probe.body.is_empty(), "{probe:?}");
    }
}

#[cfg(test)]
mod https_tests {
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const CA: &str = include_str!("../../testdata/tls/ca.pem");
    const CERT: &str = include_str!("../../testdata/tls/api.pem");
    const KEY: &str = include_str!("../../testdata/tls/api.key.pem");

    /// An HTTPS server on loopback whose only certificate is for `api.staging.test`; it
    /// answers 200 "ok" and notes each session's SNI name and Host header.
    async fn server() -> (u16, Arc<Mutex<Vec<(Option<String>, String)>>>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let noted = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    continue; // the client refused our certificate
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let mut buf = [0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let host = request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("host: ")
                            .or_else(|| l.strip_prefix("Host: "))
                    })
                    .unwrap_or_default()
                    .to_owned();
                noted.lock().unwrap().push((sni, host));
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (port, seen)
    }

    fn prober() -> HttpProber {
        HttpProber::with_roots(vec![reqwest::Certificate::from_pem(CA.as_bytes()).unwrap()])
            .unwrap()
    }

    /// `https://<load balancer>/health` with host `api.staging.test`: the connection goes to
    /// the load balancer's address, the TLS session is made for the host name (SNI) and the
    /// certificate is verified for it, and the Host header names it.
    #[tokio::test]
    async fn https_with_a_host_makes_the_session_for_that_host() {
        let (port, seen) = server().await;
        let url = format!("https://127.0.0.1:{port}/health");
        let probe = prober()
            .get(&url, Some("api.staging.test"), Duration::from_secs(5))
            .await
            .expect("healthy over TLS for api.staging.test");
        assert_eq!((probe.status, probe.body.as_str()), (200, "ok"));
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            [(
                Some("api.staging.test".to_owned()),
                "api.staging.test".to_owned()
            )]
        );
        // The same URL without the host is a session for 127.0.0.1, which the certificate
        // does not cover: refused, with the reason, instead of answered.
        let e = prober()
            .get(&url, None, Duration::from_secs(5))
            .await
            .expect_err("the certificate is not for 127.0.0.1");
        assert!(e.contains("certificate"), "{e}");
        // A host the certificate does not name is refused too: the name is verified.
        let e = prober()
            .get(&url, Some("web.staging.test"), Duration::from_secs(5))
            .await
            .expect_err("the certificate is not for web.staging.test");
        assert!(e.contains("certificate"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 1, "no request was answered");
    }

    /// A plain-http URL with a host sends the Host header to the URL's address, as before.
    #[tokio::test]
    async fn http_with_a_host_sends_the_host_header() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = conn
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await;
            request
        });
        let probe = HttpProber::new()
            .unwrap()
            .get(
                &format!("http://127.0.0.1:{port}/health"),
                Some("api.staging.test"),
                Duration::from_secs(5),
            )
            .await
            .expect("an answer");
        assert_eq!(probe.status, 204);
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(
            request.contains("\r\nhost: api.staging.test\r\n"),
            "{request}"
        );
    }
}
