//! The reference staging app of `examples/staging` on the test bed: the six stacks of
//! `examples/staging/templates` in slipway-sim (four Fargate services behind an ALB with
//! host-header routing), one ECR repository per service in moto with image `0000001`, and
//! `examples/staging/slipway.toml` pointed at the simulated ALB, stored in the state table.
//! Used by the demo and the benchmark.

use std::time::Duration;

use aws_sdk_cloudformation::types::Parameter;
use slipway_core::aws::Clients;
use slipway_core::state;

use crate::{manifest, root, Testbed};

/// The services, as slipway.toml names them.
pub const SERVICES: [&str; 4] = ["web", "api", "auth", "admin"];
/// The stacks, in the configuration's order.
pub const STACKS: [&str; 6] = [
    "staging-network",
    "staging-database",
    "staging-cache",
    "staging-secrets",
    "staging-alb",
    "staging-ecs",
];

type Result<T> = std::result::Result<T, String>;

/// Creates the app on the bed (the state table of `clients`), saying each step with `say`;
/// returns the configuration it stored.
pub async fn create(bed: &Testbed, clients: &Clients, say: impl Fn(&str)) -> Result<String> {
    let err = |what: &'static str| move |e: &dyn std::fmt::Debug| format!("{what}: {e:?}");
    say(&format!("state table {} (DynamoDB, moto)", clients.table));
    state::create_table(clients)
        .await
        .map_err(|e| e.to_string())?;

    say("ECR (moto): one repository per service, each with image 0000001");
    let mut uris = Vec::new();
    for s in SERVICES {
        let repo = format!("staging/{s}");
        let out = clients
            .ecr
            .create_repository()
            .repository_name(&repo)
            .send()
            .await
            .map_err(|e| err("create-repository")(&e))?;
        let uri = out
            .repository()
            .and_then(|r| r.repository_uri())
            .unwrap_or_default()
            .to_owned();
        let digest = push(clients, &repo, "0000001").await?;
        uris.push((s, uri, digest));
    }

    say("CloudFormation (slipway-sim): the six staging stacks of examples/staging/templates");
    for stack in STACKS {
        let body = std::fs::read_to_string(
            root().join(format!("examples/staging/templates/{stack}.json")),
        )
        .map_err(|e| e.to_string())?;
        // CDK's templates hold IAM roles (CAPABILITY_IAM); one over TemplateBody's 51,200
        // bytes goes through S3, as `cdk deploy` sends it.
        let mut create = clients
            .cloudformation
            .create_stack()
            .stack_name(stack)
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam);
        create = if body.len() > 51_200 {
            let url = bed.upload_template(&format!("{stack}.json"), &body).await;
            say(&format!(
                "  {stack}: {} bytes, sent as TemplateURL {url}",
                body.len()
            ));
            create.template_url(url)
        } else {
            create.template_body(body)
        };
        if stack == "staging-ecs" {
            for (s, uri, digest) in &uris {
                let key = format!("{}Image", capitalize(s));
                create = create.parameters(
                    Parameter::builder()
                        .parameter_key(key)
                        .parameter_value(format!("{uri}@{digest}"))
                        .build(),
                );
            }
        }
        create.send().await.map_err(|e| err("create-stack")(&e))?;
        wait_for_stack(clients, stack).await?;
        say(&format!("  {stack}: CREATE_COMPLETE"));
    }
    for s in SERVICES {
        wait_for_service(clients, &format!("staging-{s}")).await?;
    }
    say("ECS (slipway-sim): cluster staging, services staging-{web,api,auth,admin} running 2 tasks each");

    // The example configuration, pointed at this test bed: the ALB's address is the
    // simulator's, the target groups are the ones the alb stack made.
    let mut config = std::fs::read_to_string(root().join("examples/staging/slipway.toml"))
        .map_err(|e| e.to_string())?;
    config = config.replace(
        "http://staging-alb-1234567890.us-east-1.elb.amazonaws.com",
        bed.sim(),
    );
    let alb = clients
        .cloudformation
        .describe_stacks()
        .stack_name("staging-alb")
        .send()
        .await
        .map_err(|e| err("describe-stacks")(&e))?;
    for o in alb
        .stacks()
        .first()
        .map(|s| s.outputs())
        .unwrap_or_default()
    {
        let service = o
            .output_key()
            .unwrap_or_default()
            .trim_end_matches("TargetGroup")
            .to_ascii_lowercase();
        let line = config
            .lines()
            .find(|l| {
                l.starts_with("target_group_arn")
                    && l.contains(&format!("targetgroup/staging-{service}/"))
            })
            .map(str::to_owned);
        if let Some(line) = line {
            config = config.replace(
                &line,
                &format!(
                    "target_group_arn = \"{}\"",
                    o.output_value().unwrap_or_default()
                ),
            );
        }
    }
    state::store_config(clients, &config)
        .await
        .map_err(|e| e.to_string())?;
    say("examples/staging/slipway.toml stored in the state table (health checks through the simulated ALB)");
    Ok(config)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Pushes the test manifest as `repo:tag`; its digest.
pub async fn push(clients: &Clients, repo: &str, tag: &str) -> Result<String> {
    let out = clients
        .ecr
        .put_image()
        .repository_name(repo)
        .image_manifest(manifest().to_string())
        .image_tag(tag)
        .send()
        .await
        .map_err(|e| format!("put-image: {e:?}"))?;
    Ok(out
        .image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .unwrap_or_default()
        .to_owned())
}

async fn wait_for_stack(clients: &Clients, stack: &str) -> Result<()> {
    for _ in 0..600 {
        let out = clients
            .cloudformation
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = out
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        match status.as_str() {
            "CREATE_COMPLETE" => return Ok(()),
            s if s.ends_with("_IN_PROGRESS") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            s => return Err(format!("stack {stack} ended {s}")),
        }
    }
    Err(format!("stack {stack} never completed"))
}

/// Waits until `service` of cluster `staging` has one deployment at its desired count.
pub async fn wait_for_service(clients: &Clients, service: &str) -> Result<()> {
    for _ in 0..600 {
        let out = clients
            .ecs
            .describe_services()
            .cluster("staging")
            .services(service)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        if out
            .services()
            .first()
            .is_some_and(|s| s.deployments().len() == 1 && s.running_count() == s.desired_count())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("service {service} never became stable"))
}
