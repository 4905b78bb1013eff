//! RegisterTaskDefinition's validation and the normalised form ECS returns.
//!
//! - Fargate task sizes: the CPU/memory pairs of "Task size" in the ECS Developer Guide
//!   (`task-cpu-memory-error` / "Amazon ECS task definition parameters for Fargate"); any
//!   other pair is `ClientException` "No Fargate configuration exists for given values"
//!   (message as field reports quote it). `cpu`/`memory` may be given as "1 vCPU"/"2 GB"
//!   and come back as the numbers ("Task size": "specified as a string using CPU units or
//!   vCPUs … converted to an integer indicating the CPU units when the task definition is
//!   registered").
//! - Fargate "only supports network mode 'awsvpc'" (Developer Guide, "Fargate task
//!   networking"; the error text is the field-reported one).
//! - Image references follow the Docker reference grammar
//!   (`[registry/]path[:tag][@sha256:<64 hex>]`, distribution/reference); the exact
//!   ClientException text for a bad one is UNVERIFIED, ours names the container.
//! - DescribeTaskDefinition returns the normalised document: `registeredAt`, `registeredBy`,
//!   `requiresAttributes`, `compatibilities`, container defaults (`cpu` 0, `essential` true,
//!   port mappings with `hostPort` = `containerPort` and `protocol` "tcp" under awsvpc, empty
//!   lists) — botocore `ecs` shapes `TaskDefinition` and `ContainerDefinition`.

use serde_json::{json, Map, Value};

use crate::wire::{ApiError, ApiResult};

fn client(message: impl Into<String>) -> ApiError {
    ApiError::new("ClientException", message)
}

/// "1 vCPU" → 1024, "0.25 vcpu" → 256, "512" → 512.
fn cpu_units(v: &str) -> Option<u32> {
    let t = v.trim().to_ascii_lowercase();
    match t.strip_suffix("vcpu") {
        Some(n) => Some((n.trim().parse::<f64>().ok()? * 1024.0).round() as u32),
        None => t.parse().ok(),
    }
}

/// "2 GB" → 2048, "512" → 512 (MiB).
fn memory_mib(v: &str) -> Option<u32> {
    let t = v.trim().to_ascii_lowercase();
    match t.strip_suffix("gb") {
        Some(n) => Some((n.trim().parse::<f64>().ok()? * 1024.0).round() as u32),
        None => t.strip_suffix("mb").unwrap_or(&t).trim().parse().ok(),
    }
}

/// Whether Fargate offers this CPU/memory pair ("Task size" table of the Developer Guide).
pub fn fargate_size_ok(cpu: u32, memory: u32) -> bool {
    let gb = |n: u32| n * 1024;
    match cpu {
        256 => [512, gb(1), gb(2)].contains(&memory),
        512 => (gb(1)..=gb(4)).step_by(1024).any(|m| m == memory),
        1024 => (gb(2)..=gb(8)).step_by(1024).any(|m| m == memory),
        2048 => (gb(4)..=gb(16)).step_by(1024).any(|m| m == memory),
        4096 => (gb(8)..=gb(30)).step_by(1024).any(|m| m == memory),
        8192 => (gb(16)..=gb(60)).step_by(4096).any(|m| m == memory),
        16384 => (gb(32)..=gb(120)).step_by(8192).any(|m| m == memory),
        _ => false,
    }
}

/// Whether `image` is a valid Docker image reference.
pub fn image_ok(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some(hex) = d.strip_prefix("sha256:") else {
            return false;
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/' (a registry may have a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return false;
        }
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        // The first component may be a registry host (dots, a port, upper case).
        let registry = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        let ok = if registry {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        } else {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        };
        if !ok {
            return false;
        }
    }
    !name.is_empty()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Validates a RegisterTaskDefinition input (camelCase) and returns the normalised
/// definition, without the ARN, revision, status and registration fields.
pub fn normalise(input: &Value) -> ApiResult<Map<String, Value>> {
    let mut td: Map<String, Value> = input.as_object().cloned().unwrap_or_default();
    td.remove("tags");
    let fargate = strings(td.get("requiresCompatibilities"))
        .iter()
        .any(|c| c == "FARGATE");
    let network_mode = td
        .get("networkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge")
        .to_owned();
    if fargate && network_mode != "awsvpc" {
        return Err(client("Fargate only supports network mode 'awsvpc'."));
    }
    let cpu = match td.get("cpu").and_then(Value::as_str) {
        Some(c) => Some(
            cpu_units(c)
                .ok_or_else(|| client(format!("Invalid 'cpu' setting for task: {c:?}.")))?,
        ),
        None => None,
    };
    let memory = match td.get("memory").and_then(Value::as_str) {
        Some(m) => Some(
            memory_mib(m)
                .ok_or_else(|| client(format!("Invalid 'memory' setting for task: {m:?}.")))?,
        ),
        None => None,
    };
    if fargate {
        match (cpu, memory) {
            (Some(c), Some(m)) if fargate_size_ok(c, m) => {}
            (Some(c), Some(m)) => {
                return Err(client(format!(
                    "No Fargate configuration exists for given values: {c} CPU, {m} memory. See the Amazon ECS documentation for the valid values."
                )))
            }
            _ => {
                return Err(client(
                    "Fargate requires that 'cpu' be defined at the task level.",
                ))
            }
        }
    }
    if let Some(c) = cpu {
        td.insert("cpu".into(), json!(c.to_string()));
    }
    if let Some(m) = memory {
        td.insert("memory".into(), json!(m.to_string()));
    }
    td.insert("networkMode".into(), json!(network_mode));

    let containers = td
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| client("Container definitions are required."))?;
    let mut normalised = Vec::with_capacity(containers.len());
    let mut attributes = vec!["com.amazonaws.ecs.capability.docker-remote-api.1.18"];
    for (i, c) in containers.iter().enumerate() {
        let mut c = c.as_object().cloned().unwrap_or_default();
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(client(format!(
                "Container.name should not be null or empty (containerDefinitions[{i}])."
            )));
        }
        let image = c
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if image.is_empty() {
            return Err(client(format!(
                "Container.image should not be null or empty (containerDefinitions[{i}])."
            )));
        }
        if !image_ok(&image) {
            return Err(client(format!(
                "Container.image contains invalid characters or is not a valid image reference: {image:?} (containerDefinitions[{i}], container {name})."
            )));
        }
        c.entry("cpu").or_insert(json!(0));
        c.entry("essential").or_insert(json!(true));
        for list in [
            "portMappings",
            "environment",
            "mountPoints",
            "volumesFrom",
            "systemControls",
        ] {
            c.entry(list).or_insert(json!([]));
        }
        if let Some(Value::Array(ports)) = c.get_mut("portMappings") {
            for p in ports.iter_mut() {
                let container_port = p.get("containerPort").cloned();
                if let Some(p) = p.as_object_mut() {
                    if network_mode == "awsvpc" {
                        if let Some(cp) = container_port {
                            p.entry("hostPort").or_insert(cp);
                        }
                    }
                    p.entry("protocol").or_insert(json!("tcp"));
                }
            }
        }
        if c.get("logConfiguration")
            .and_then(|l| l.get("logDriver"))
            .and_then(Value::as_str)
            == Some("awslogs")
        {
            attributes.push("com.amazonaws.ecs.capability.logging-driver.awslogs");
            attributes.push("ecs.capability.execution-role-awslogs");
        }
        if image.contains(".dkr.ecr.") {
            attributes.push("com.amazonaws.ecs.capability.ecr-auth");
            attributes.push("ecs.capability.execution-role-ecr-pull");
        }
        if c.get("secrets").is_some() {
            attributes.push("ecs.capability.secrets.asm.environment-variables");
        }
        if c.get("healthCheck").is_some() {
            attributes.push("ecs.capability.container-health-check");
        }
        normalised.push(Value::Object(c));
    }
    if network_mode == "awsvpc" {
        attributes.push("ecs.capability.task-eni");
    }
    if td.get("taskRoleArn").is_some() {
        attributes.push("com.amazonaws.ecs.capability.task-iam-role");
    }
    attributes.sort_unstable();
    attributes.dedup();
    td.insert("containerDefinitions".into(), Value::Array(normalised));
    td.insert(
        "requiresAttributes".into(),
        Value::Array(attributes.iter().map(|a| json!({ "name": a })).collect()),
    );
    td.entry("volumes").or_insert(json!([]));
    td.entry("placementConstraints").or_insert(json!([]));
    td.insert(
        "compatibilities".into(),
        if network_mode == "awsvpc" {
            json!(["EC2", "FARGATE"])
        } else {
            json!(["EC2"])
        },
    );
    Ok(td)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pairs from the Developer Guide's "Task size" table.
    #[test]
    fn fargate_sizes_follow_the_task_size_table() {
        assert!(fargate_size_ok(256, 512));
        assert!(fargate_size_ok(512, 1024));
        assert!(fargate_size_ok(1024, 8192));
        assert!(fargate_size_ok(8192, 20480));
        assert!(!fargate_size_ok(256, 4096));
        assert!(!fargate_size_ok(512, 512));
        assert!(!fargate_size_ok(8192, 17408)); // 8 vCPU takes 4 GB steps
        assert!(!fargate_size_ok(300, 1024));
        assert_eq!(cpu_units("1 vCPU"), Some(1024));
        assert_eq!(cpu_units(".25 vcpu"), Some(256));
        assert_eq!(memory_mib("2 GB"), Some(2048));
        assert_eq!(memory_mib("512"), Some(512));
    }

    #[test]
    fn image_references_follow_the_docker_grammar() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/staging/api:3f2a1bc",
            "localhost:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(image_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx@sha256:123",
            "repo/with space",
            "a//b",
            "nginx:-tag",
        ] {
            assert!(!image_ok(bad), "{bad}");
        }
    }

    #[test]
    fn fargate_needs_awsvpc_and_a_valid_size() {
        let base = json!({"family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "a", "image": "nginx", "portMappings": [{"containerPort": 80}]}]});
        let td = normalise(&base).expect("valid");
        assert_eq!(
            td["containerDefinitions"][0]["portMappings"][0]["hostPort"],
            80
        );
        assert_eq!(td["containerDefinitions"][0]["essential"], true);
        let mut bridge = base.clone();
        bridge["networkMode"] = json!("bridge");
        assert!(normalise(&bridge).unwrap_err().message.contains("awsvpc"));
        let mut big = base.clone();
        big["memory"] = json!("4096");
        assert!(normalise(&big)
            .unwrap_err()
            .message
            .contains("No Fargate configuration exists for given values: 256 CPU, 4096 memory"));
        let mut gb = base;
        gb["cpu"] = json!("1 vCPU");
        gb["memory"] = json!("2 GB");
        let td = normalise(&gb).expect("vCPU and GB units");
        assert_eq!(
            (td["cpu"].as_str(), td["memory"].as_str()),
            (Some("1024"), Some("2048"))
        );
    }
}
