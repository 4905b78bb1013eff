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

/// The real prober: one reqwest client, built once per Lambda. There is no `Default`: a
/// default reqwest client follows redirects.
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    /// A prober that never follows redirects (a 302 to a login page is not "healthy"). If
    /// that client cannot be built, this says why — it never falls back to a default
    /// client, which would follow them.
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the health check's HTTP client: {e}"))?;
        Ok(Self { client })
    }
}

impl Prober for HttpProber {
    fn get<'a>(
        &'a self,
        url: &'a str,
        host: Option<&'a str>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Probe, String>> + Send + 'a>> {
        Box::pin(async move {
            let start = Instant::now();
            let mut request = self.client.get(url).timeout(timeout);
            if let Some(h) = host {
                request = request.header(reqwest::header::HOST, h);
            }
            let response = request.send().await.map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else {
                    format!("request failed: {e}")
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
            report.targets = Some(target_health(clients, &svc.name, tg).await?);
        }
        tracing::info!(service = %svc.name, passes = report.passes, targets = ?report.targets, "healthy");
        services.push(report);
    }
    Ok(HealthReport { services })
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
            tokio::time::sleep(Duration::from_millis(h.interval_ms)).await;
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
