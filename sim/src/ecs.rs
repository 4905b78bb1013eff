//! Amazon ECS: clusters, task definitions and services whose deployments progress in time.
//!
//! Behaviour follows the ECS Developer Guide:
//! - rolling update (`minimumHealthyPercent` 100, `maximumPercent` 200): the new deployment is
//!   PRIMARY and starts its tasks; each new task that reaches RUNNING lets one old task stop;
//!   the rollout is COMPLETED when the PRIMARY runs `desiredCount` tasks and no older
//!   deployment has any ("Deploy Amazon ECS services by replacing tasks");
//! - the deployment circuit breaker ("How the Amazon ECS deployment circuit breaker detects
//!   failures"): stage 1 counts tasks that never reach RUNNING, stage 2 tasks that fail their
//!   ELB health checks; at `failedTasks` ≥ the threshold (0.5 × desired count, at least 3,
//!   at most 200) the deployment turns FAILED and, with `rollback`, a new deployment back to
//!   the last COMPLETED one starts;
//! - "ECS Deployment State Change" events (SERVICE_DEPLOYMENT_IN_PROGRESS / COMPLETED /
//!   FAILED) go to EventBridge.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::env::Env;
use crate::scenario::Failure;
use crate::wire::{ApiError, ApiResult};

/// Seconds a task that fails its ELB health checks stays RUNNING before ECS stops it.
const ELB_FAIL_AFTER: f64 = 10.0;
/// The most service events ECS keeps.
const MAX_SERVICE_EVENTS: usize = 100;

/// The ECS part of the account.
#[derive(Debug, Default)]
pub struct Ecs {
    clusters: BTreeMap<String, Cluster>,
    /// family → revisions, revision N at index N-1.
    task_definitions: BTreeMap<String, Vec<Value>>,
    /// (cluster name, service name) → service.
    services: BTreeMap<(String, String), Service>,
    next_ip: u32,
}

#[derive(Debug)]
struct Cluster {
    name: String,
    arn: String,
}

#[derive(Debug)]
struct Service {
    name: String,
    arn: String,
    cluster: String,
    cluster_arn: String,
    status: &'static str,
    task_definition: String,
    desired: i64,
    load_balancers: Vec<Value>,
    network_configuration: Option<Value>,
    deployment_configuration: Value,
    launch_type: String,
    created_at: f64,
    deployments: Vec<Deployment>,
    tasks: Vec<Task>,
    /// Newest last; rendered newest first.
    events: Vec<(String, f64, String)>,
    /// The last deployment that COMPLETED: (id, task definition ARN).
    last_completed: Option<(String, String)>,
    /// Round-robin position for requests to the service's tasks.
    next_target: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    InProgress,
    Completed,
    Failed,
}

impl Rollout {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug)]
struct Deployment {
    id: String,
    primary: bool,
    task_definition: String,
    images: Vec<String>,
    desired: i64,
    failed_tasks: i64,
    rollout: Rollout,
    reason: String,
    created_at: f64,
    updated_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TaskState {
    Pending { ready_at: f64 },
    Running { fails_at: Option<f64> },
}

#[derive(Debug)]
struct Task {
    id: String,
    deployment: String,
    ip: String,
    state: TaskState,
}

/// A load balancer target backed by a task, for ELBv2's DescribeTargetHealth.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The task's private IP (awsvpc network mode: targets are IPs).
    pub ip: String,
    /// The container port registered.
    pub port: i64,
    /// `initial`, `healthy` or `unhealthy`.
    pub state: &'static str,
    /// ELB's reason code for a state other than healthy.
    pub reason: Option<&'static str>,
}

/// The task that answers a request sent to a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Answering {
    /// The task id.
    pub task: String,
    /// The images it runs.
    pub images: Vec<String>,
}

fn str_field<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

fn required_str<'a>(input: &'a Value, field: &str) -> ApiResult<&'a str> {
    str_field(input, field).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterException",
            format!("{field} is required and must be a string."),
        )
    })
}

/// The last path segment of an ARN or the name itself: `arn:…:cluster/x` → `x`.
fn name_of(name_or_arn: &str) -> &str {
    if name_or_arn.starts_with("arn:") {
        name_or_arn.rsplit('/').next().unwrap_or(name_or_arn)
    } else {
        name_or_arn
    }
}

fn images_of(task_definition: &Value) -> Vec<String> {
    task_definition
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| str_field(c, "image").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The circuit breaker's failed-task threshold for a desired count.
pub fn failure_threshold(desired: i64) -> i64 {
    ((desired + 1) / 2).clamp(3, 200)
}

impl Ecs {
    /// Dispatches one JSON 1.1 operation.
    pub fn call(&mut self, env: &mut Env, op: &str, input: &Value) -> ApiResult<Value> {
        match op {
            "CreateCluster" => self.create_cluster(env, input),
            "DescribeClusters" => Ok(self.describe_clusters(input)),
            "RegisterTaskDefinition" => self.register_task_definition(env, input),
            "DescribeTaskDefinition" => self.describe_task_definition(input),
            "CreateService" => self.create_service(env, input),
            "UpdateService" => self.update_service(env, input),
            "DescribeServices" => self.describe_services(input),
            "DeleteService" => self.delete_service(env, input),
            "ListServices" => self.list_services(input),
            _ => Err(ApiError::new(
                "UnknownOperationException",
                format!("slipway-sim does not implement ECS {op}"),
            )),
        }
    }

    /// Creates a cluster (idempotent, as in ECS) and returns its name.
    pub fn ensure_cluster(&mut self, env: &Env, name: &str) -> String {
        self.clusters
            .entry(name.to_owned())
            .or_insert_with(|| Cluster {
                name: name.to_owned(),
                arn: env.arn("ecs", &format!("cluster/{name}")),
            });
        name.to_owned()
    }

    fn cluster_json(&self, c: &Cluster) -> Value {
        let services: Vec<&Service> = self
            .services
            .values()
            .filter(|s| s.cluster == c.name && s.status == "ACTIVE")
            .collect();
        let running = services.iter().map(|s| s.count(true)).sum::<i64>();
        let pending = services.iter().map(|s| s.count(false)).sum::<i64>();
        json!({
            "clusterArn": c.arn, "clusterName": c.name, "status": "ACTIVE",
            "registeredContainerInstancesCount": 0, "runningTasksCount": running,
            "pendingTasksCount": pending, "activeServicesCount": services.len(),
            "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
        })
    }

    fn create_cluster(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let name = str_field(input, "clusterName").unwrap_or("default");
        let name = self.ensure_cluster(env, name);
        Ok(json!({ "cluster": self.cluster_json(&self.clusters[&name]) }))
    }

    fn describe_clusters(&self, input: &Value) -> Value {
        let wanted: Vec<String> = input
            .get("clusters")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| vec!["default".to_owned()]);
        let mut clusters = Vec::new();
        let mut failures = Vec::new();
        for w in &wanted {
            match self.clusters.get(name_of(w)) {
                Some(c) => clusters.push(self.cluster_json(c)),
                None => failures.push(json!({ "arn": w, "reason": "MISSING" })),
            }
        }
        json!({ "clusters": clusters, "failures": failures })
    }

    fn cluster(&self, input: &Value) -> ApiResult<&Cluster> {
        let name = name_of(str_field(input, "cluster").unwrap_or("default"));
        self.clusters
            .get(name)
            .ok_or_else(|| ApiError::new("ClusterNotFoundException", "Cluster not found."))
    }

    /// Registers a task definition revision from an ECS API shaped (camelCase) document.
    pub fn register(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let family = required_str(input, "family")?;
        if family.is_empty()
            || family.len() > 255
            || !family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::new(
                "ClientException",
                format!("Family contains invalid characters or is too long: {family:?}. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."),
            ));
        }
        let containers = input
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ApiError::new("ClientException", "Container definitions are required.")
            })?;
        for (i, c) in containers.iter().enumerate() {
            if str_field(c, "name").is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    "ClientException",
                    format!(
                        "Container.name should not be null or empty (containerDefinitions[{i}])."
                    ),
                ));
            }
            if str_field(c, "image").is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    "ClientException",
                    format!(
                        "Container.image should not be null or empty (containerDefinitions[{i}])."
                    ),
                ));
            }
        }
        let revisions = self.task_definitions.entry(family.to_owned()).or_default();
        let revision = revisions.len() + 1;
        let mut td: Map<String, Value> = input.as_object().cloned().unwrap_or_default();
        td.remove("tags");
        td.insert(
            "taskDefinitionArn".into(),
            json!(env.arn("ecs", &format!("task-definition/{family}:{revision}"))),
        );
        td.insert("revision".into(), json!(revision));
        td.insert("status".into(), json!("ACTIVE"));
        td.insert("registeredAt".into(), json!(env.now));
        td.insert("compatibilities".into(), json!(["EC2", "FARGATE"]));
        let td = Value::Object(td);
        revisions.push(td.clone());
        Ok(td)
    }

    fn register_task_definition(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let td = self.register(env, input)?;
        let tags = input.get("tags").cloned().unwrap_or_else(|| json!([]));
        Ok(json!({ "taskDefinition": td, "tags": tags }))
    }

    /// Finds a task definition by `family`, `family:revision` or ARN.
    pub fn task_definition(&self, reference: &str) -> Option<&Value> {
        let reference = reference
            .rsplit("task-definition/")
            .next()
            .unwrap_or(reference);
        let (family, revision) = match reference.split_once(':') {
            Some((f, r)) => (f, Some(r.parse::<usize>().ok()?)),
            None => (reference, None),
        };
        let revisions = self.task_definitions.get(family)?;
        match revision {
            Some(r) => revisions.get(r.checked_sub(1)?),
            None => revisions.last(),
        }
    }

    fn describe_task_definition(&self, input: &Value) -> ApiResult<Value> {
        let reference = required_str(input, "taskDefinition")?;
        let td = self.task_definition(reference).ok_or_else(|| {
            ApiError::new("ClientException", "Unable to describe task definition.")
        })?;
        Ok(json!({ "taskDefinition": td, "tags": [] }))
    }

    fn resolve_td(&self, reference: &str) -> ApiResult<(String, Vec<String>)> {
        let td = self.task_definition(reference).ok_or_else(|| {
            ApiError::new(
                "ClientException",
                format!("TaskDefinition not found: {reference}"),
            )
        })?;
        let arn = str_field(td, "taskDefinitionArn")
            .unwrap_or_default()
            .to_owned();
        Ok((arn, images_of(td)))
    }

    /// Creates a service (the CreateService operation; also used by CloudFormation).
    pub fn create_service_from(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?;
        let (cluster_name, cluster_arn) = (cluster.name.clone(), cluster.arn.clone());
        let name = required_str(input, "serviceName")?.to_owned();
        let key = (cluster_name.clone(), name.clone());
        if self
            .services
            .get(&key)
            .is_some_and(|s| s.status != "INACTIVE")
        {
            return Err(ApiError::new(
                "InvalidParameterException",
                "Creation of service was not idempotent.",
            ));
        }
        let (td_arn, images) = self.resolve_td(required_str(input, "taskDefinition")?)?;
        let desired = input
            .get("desiredCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if desired < 0 {
            return Err(ApiError::new(
                "InvalidParameterException",
                "desiredCount must be >= 0.",
            ));
        }
        let mut deployment_configuration = json!({
            "deploymentCircuitBreaker": { "enable": false, "rollback": false },
            "maximumPercent": 200, "minimumHealthyPercent": 100,
        });
        if let Some(Value::Object(dc)) = input.get("deploymentConfiguration") {
            for (k, v) in dc {
                deployment_configuration[k] = v.clone();
            }
        }
        let mut service = Service {
            arn: env.arn("ecs", &format!("service/{cluster_name}/{name}")),
            name: name.clone(),
            cluster: cluster_name,
            cluster_arn,
            status: "ACTIVE",
            task_definition: td_arn.clone(),
            desired,
            load_balancers: input
                .get("loadBalancers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            network_configuration: input.get("networkConfiguration").cloned(),
            deployment_configuration,
            launch_type: str_field(input, "launchType")
                .unwrap_or("FARGATE")
                .to_owned(),
            created_at: env.now,
            deployments: Vec::new(),
            tasks: Vec::new(),
            events: Vec::new(),
            last_completed: None,
            next_target: 0,
        };
        service.start_deployment(env, td_arn, images, None);
        let out = service.to_json();
        self.services.insert(key, service);
        Ok(out)
    }

    fn create_service(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        Ok(json!({ "service": self.create_service_from(env, input)? }))
    }

    fn service_mut(&mut self, input: &Value) -> ApiResult<&mut Service> {
        let cluster = self.cluster(input)?.name.clone();
        let name = name_of(required_str(input, "service")?).to_owned();
        match self.services.get_mut(&(cluster, name)) {
            Some(s) if s.status == "ACTIVE" => Ok(s),
            Some(_) => Err(ApiError::new(
                "ServiceNotActiveException",
                "Service was not ACTIVE.",
            )),
            None => Err(ApiError::new(
                "ServiceNotFoundException",
                "Service not found.",
            )),
        }
    }

    /// Updates a service (the UpdateService operation; also used by CloudFormation).
    pub fn update_service_from(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let td = match str_field(input, "taskDefinition") {
            Some(r) => Some(self.resolve_td(r)?),
            None => None,
        };
        let service = self.service_mut(input)?;
        if let Some(desired) = input.get("desiredCount").and_then(Value::as_i64) {
            if desired < 0 {
                return Err(ApiError::new(
                    "InvalidParameterException",
                    "desiredCount must be >= 0.",
                ));
            }
            service.desired = desired;
            if let Some(p) = service.primary_mut() {
                p.desired = desired;
            }
        }
        if let Some(Value::Object(dc)) = input.get("deploymentConfiguration") {
            for (k, v) in dc {
                service.deployment_configuration[k] = v.clone();
            }
        }
        let force = input.get("forceNewDeployment").and_then(Value::as_bool) == Some(true);
        let current = service.primary().map(|p| p.task_definition.clone());
        match td {
            // The same task definition without forceNewDeployment starts nothing new.
            Some((arn, images)) if force || current.as_deref() != Some(arn.as_str()) => {
                service.start_deployment(env, arn, images, None);
            }
            None if force => {
                let arn = service.task_definition.clone();
                let images = service
                    .primary()
                    .map(|p| p.images.clone())
                    .unwrap_or_default();
                service.start_deployment(env, arn, images, None);
            }
            _ => {}
        }
        Ok(service.to_json())
    }

    fn update_service(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        Ok(json!({ "service": self.update_service_from(env, input)? }))
    }

    fn describe_services(&self, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?;
        let wanted = input
            .get("services")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ApiError::new("InvalidParameterException", "Services cannot be empty.")
            })?;
        if wanted.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterException",
                "Services cannot be empty.",
            ));
        }
        if wanted.len() > 10 {
            return Err(ApiError::new(
                "InvalidParameterException",
                "DescribeServices accepts at most 10 services per call.",
            ));
        }
        let mut services = Vec::new();
        let mut failures = Vec::new();
        for w in wanted.iter().filter_map(Value::as_str) {
            match self
                .services
                .get(&(cluster.name.clone(), name_of(w).to_owned()))
            {
                Some(s) => services.push(s.to_json()),
                None => failures.push(json!({
                    "arn": if w.starts_with("arn:") { w.to_owned() } else {
                        cluster.arn.replace(":cluster/", ":service/") + "/" + w
                    },
                    "reason": "MISSING",
                })),
            }
        }
        Ok(json!({ "services": services, "failures": failures }))
    }

    fn list_services(&self, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?;
        let arns: Vec<&str> = self
            .services
            .values()
            .filter(|s| s.cluster == cluster.name && s.status == "ACTIVE")
            .map(|s| s.arn.as_str())
            .collect();
        Ok(json!({ "serviceArns": arns }))
    }

    /// Deletes a service (DeleteService; also used by CloudFormation with `force`).
    pub fn delete_service_from(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let force = input.get("force").and_then(Value::as_bool) == Some(true);
        let service = self.service_mut(input)?;
        if service.desired > 0 && !force {
            return Err(ApiError::new(
                "InvalidParameterException",
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        service.status = "INACTIVE";
        service.desired = 0;
        service.tasks.clear();
        service.deployments.clear();
        service.event(env, format!("(service {}) has been deleted.", service.name));
        Ok(json!({ "service": service.to_json() }))
    }

    fn delete_service(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        self.delete_service_from(env, input)
    }

    /// Moves every service forward to `env.now`.
    pub fn advance(&mut self, env: &mut Env) {
        for service in self.services.values_mut() {
            if service.status == "ACTIVE" {
                service.advance(env, &mut self.next_ip);
            }
        }
    }

    /// The targets a target group has: the tasks of every service registered with it.
    pub fn targets(
        &self,
        target_group_arn: &str,
        scenario: &crate::scenario::Scenario,
    ) -> Vec<Target> {
        let mut out = Vec::new();
        for s in self.services.values().filter(|s| s.status == "ACTIVE") {
            for lb in &s.load_balancers {
                if str_field(lb, "targetGroupArn") != Some(target_group_arn) {
                    continue;
                }
                let port = lb
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(80);
                for t in &s.tasks {
                    let images = s.images_of_deployment(&t.deployment);
                    let (state, reason) = match t.state {
                        TaskState::Pending { .. } => {
                            ("initial", Some("Elb.RegistrationInProgress"))
                        }
                        TaskState::Running { .. }
                            if scenario
                                .image_rule(
                                    images.iter().map(String::as_str),
                                    Failure::UnhealthyTarget,
                                )
                                .is_some() =>
                        {
                            ("unhealthy", Some("Target.ResponseCodeMismatch"))
                        }
                        TaskState::Running { .. } => ("healthy", None),
                    };
                    out.push(Target {
                        ip: t.ip.clone(),
                        port,
                        state,
                        reason,
                    });
                }
            }
        }
        out
    }

    /// The ACTIVE service registered with this target group.
    pub fn service_of_target_group(&self, target_group: &str) -> Option<String> {
        self.services
            .values()
            .find(|s| {
                s.status == "ACTIVE"
                    && s.load_balancers
                        .iter()
                        .any(|lb| str_field(lb, "targetGroupArn") == Some(target_group))
            })
            .map(|s| s.name.clone())
    }

    /// The running task that answers the next request to service `name` (any cluster),
    /// round robin, as a load balancer would pick it.
    pub fn answering_task(&mut self, name: &str) -> Option<Answering> {
        let service = self
            .services
            .values_mut()
            .find(|s| s.name == name && s.status == "ACTIVE")?;
        let running: Vec<usize> = service
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t.state, TaskState::Running { .. }))
            .map(|(i, _)| i)
            .collect();
        if running.is_empty() {
            return None;
        }
        service.next_target = service.next_target.wrapping_add(1);
        let task = &service.tasks[running[service.next_target % running.len()]];
        Some(Answering {
            task: task.id.clone(),
            images: service.images_of_deployment(&task.deployment),
        })
    }

    /// Whether a service of this name exists and is ACTIVE, in any cluster.
    pub fn has_service(&self, name: &str) -> bool {
        self.services
            .values()
            .any(|s| s.name == name && s.status == "ACTIVE")
    }
}

impl Service {
    fn primary(&self) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.primary)
    }

    fn primary_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments.iter_mut().rev().find(|d| d.primary)
    }

    fn images_of_deployment(&self, id: &str) -> Vec<String> {
        self.deployments
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.images.clone())
            .unwrap_or_default()
    }

    fn count(&self, running: bool) -> i64 {
        self.tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Running { .. }) == running)
            .count() as i64
    }

    fn circuit_breaker(&self) -> (bool, bool) {
        let cb = &self.deployment_configuration["deploymentCircuitBreaker"];
        (
            cb["enable"].as_bool() == Some(true),
            cb["rollback"].as_bool() == Some(true),
        )
    }

    fn event(&mut self, env: &mut Env, message: String) {
        self.events.push((env.ids.uuid(), env.now, message));
        if self.events.len() > MAX_SERVICE_EVENTS {
            self.events.remove(0);
        }
    }

    fn state_change(&self, env: &mut Env, name: &str, deployment: &str, reason: &str) {
        let event_type = if name.ends_with("FAILED") {
            "ERROR"
        } else {
            "INFO"
        };
        env.emit(
            "aws.ecs",
            "ECS Deployment State Change",
            vec![self.arn.clone()],
            json!({
                "eventType": event_type,
                "eventName": name,
                "deploymentId": deployment,
                "updatedAt": crate::wire::iso8601(env.now),
                "reason": reason,
            }),
        );
    }

    /// Makes a new PRIMARY deployment; the previous ones become ACTIVE and drain.
    fn start_deployment(
        &mut self,
        env: &mut Env,
        td: String,
        images: Vec<String>,
        reason: Option<String>,
    ) {
        for d in &mut self.deployments {
            d.primary = false;
        }
        let id = env.ids.deployment_id();
        let reason = reason.unwrap_or_else(|| format!("ECS deployment {id} in progress."));
        self.state_change(env, "SERVICE_DEPLOYMENT_IN_PROGRESS", &id, &reason);
        self.task_definition = td.clone();
        self.deployments.push(Deployment {
            id,
            primary: true,
            task_definition: td,
            images,
            desired: self.desired,
            failed_tasks: 0,
            rollout: Rollout::InProgress,
            reason,
            created_at: env.now,
            updated_at: env.now,
        });
    }

    fn advance(&mut self, env: &mut Env, next_ip: &mut u32) {
        let now = env.now;
        // Tasks whose start is due either run or (crashing image) stop; running tasks that
        // fail their ELB checks stop after a while.
        let mut failed: Vec<(String, String, &'static str)> = Vec::new();
        let mut i = 0;
        while i < self.tasks.len() {
            let images = self.images_of_deployment(&self.tasks[i].deployment);
            let images = images.iter().map(String::as_str);
            let task = &mut self.tasks[i];
            match task.state {
                TaskState::Pending { ready_at } if ready_at <= now => {
                    if env
                        .scenario
                        .image_rule(images.clone(), Failure::Crash)
                        .is_some()
                    {
                        let t = self.tasks.remove(i);
                        failed.push((t.deployment, t.id, "pending"));
                        continue;
                    }
                    let fails_at = env
                        .scenario
                        .image_rule(images, Failure::UnhealthyTarget)
                        .map(|_| ready_at + ELB_FAIL_AFTER);
                    task.state = TaskState::Running { fails_at };
                }
                TaskState::Running { fails_at: Some(at) } if at <= now => {
                    let t = self.tasks.remove(i);
                    failed.push((t.deployment, t.id, "running"));
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        for (deployment, task, was) in failed {
            if let Some(d) = self.deployments.iter_mut().find(|d| d.id == deployment) {
                d.failed_tasks += 1;
                d.updated_at = now;
            }
            let why = if was == "pending" {
                "Essential container in task exited"
            } else {
                "Task failed ELB health checks"
            };
            let message = format!(
                "(service {}) has stopped 1 {was} tasks: (task {task}). Reason: {why}",
                self.name
            );
            self.event(env, message);
        }

        let Some(pi) = self.deployments.iter().rposition(|d| d.primary) else {
            return;
        };
        let (enabled, rollback) = self.circuit_breaker();
        let threshold = failure_threshold(self.deployments[pi].desired);
        if self.deployments[pi].rollout == Rollout::InProgress
            && enabled
            && self.deployments[pi].failed_tasks >= threshold
        {
            self.fail(env, pi, rollback);
            return;
        }
        if self.deployments[pi].rollout == Rollout::Failed {
            return; // ECS launches no more tasks for a FAILED deployment.
        }

        // Launch what the PRIMARY still lacks.
        let p_id = self.deployments[pi].id.clone();
        let live = self.tasks.iter().filter(|t| t.deployment == p_id).count() as i64;
        let missing = self.deployments[pi].desired - live;
        if missing > 0 {
            let start = env
                .scenario
                .task_start(self.deployments[pi].images.iter().map(String::as_str));
            let mut started = Vec::new();
            for _ in 0..missing {
                *next_ip += 1;
                let id = env.ids.hex32();
                started.push(format!("(task {id})"));
                self.tasks.push(Task {
                    id,
                    deployment: p_id.clone(),
                    ip: format!("10.0.{}.{}", (*next_ip / 250) % 256, *next_ip % 250 + 2),
                    state: TaskState::Pending {
                        ready_at: now + start,
                    },
                });
            }
            let message = format!(
                "(service {}) has started {missing} tasks: {}.",
                self.name,
                started.join(" ")
            );
            self.event(env, message);
        } else if missing < 0 {
            // Scaled in: stop the newest extra tasks of the PRIMARY.
            let extra = (-missing) as usize;
            let mut stopped = 0;
            self.tasks.retain(|t| {
                if t.deployment == p_id && stopped < extra {
                    stopped += 1;
                    false
                } else {
                    true
                }
            });
        }

        // Old tasks stop as new ones run (minimum healthy 100 %): pending old tasks at once.
        self.tasks
            .retain(|t| t.deployment == p_id || matches!(t.state, TaskState::Running { .. }));
        let healthy_new = self
            .tasks
            .iter()
            .filter(|t| t.deployment == p_id && t.state == TaskState::Running { fails_at: None })
            .count() as i64;
        let desired = self.deployments[pi].desired;
        let mut old_running = self.tasks.iter().filter(|t| t.deployment != p_id).count() as i64;
        let mut stopped = Vec::new();
        while old_running > 0 && healthy_new + old_running > desired {
            if let Some(pos) = self.tasks.iter().position(|t| t.deployment != p_id) {
                stopped.push(format!("(task {})", self.tasks.remove(pos).id));
            }
            old_running -= 1;
        }
        if !stopped.is_empty() {
            let message = format!(
                "(service {}) has stopped {} running tasks: {}.",
                self.name,
                stopped.len(),
                stopped.join(" ")
            );
            self.event(env, message);
        }

        let p = &self.deployments[pi];
        if p.rollout == Rollout::InProgress && healthy_new == p.desired && old_running == 0 {
            let id = p.id.clone();
            let td = p.task_definition.clone();
            let reason = format!("ECS deployment {id} completed.");
            self.deployments.retain(|d| d.id == id);
            let p = &mut self.deployments[0];
            p.rollout = Rollout::Completed;
            p.reason = reason.clone();
            p.updated_at = now;
            self.last_completed = Some((id.clone(), td));
            self.state_change(env, "SERVICE_DEPLOYMENT_COMPLETED", &id, &reason);
            let message = format!(
                "(service {}) (deployment {id}) deployment completed.",
                self.name
            );
            self.event(env, message);
            let message = format!("(service {}) has reached a steady state.", self.name);
            self.event(env, message);
        }
    }

    /// The circuit breaker trips on the PRIMARY at index `pi`.
    fn fail(&mut self, env: &mut Env, pi: usize, rollback: bool) {
        let reason = "ECS deployment circuit breaker: tasks failed to start.".to_owned();
        let d = &mut self.deployments[pi];
        d.rollout = Rollout::Failed;
        d.reason = reason.clone();
        d.updated_at = env.now;
        let id = d.id.clone();
        self.state_change(env, "SERVICE_DEPLOYMENT_FAILED", &id, &reason);
        let message = format!(
            "(service {}) deployment {id} deployment failed: tasks failed to start.",
            self.name
        );
        self.event(env, message);
        // Its tasks that never became healthy go; running ones drain as the rollback runs.
        self.tasks
            .retain(|t| t.deployment != id || t.state == TaskState::Running { fails_at: None });
        let target = self.last_completed.clone();
        match target {
            Some((back_to, td)) if rollback && td != self.deployments[pi].task_definition => {
                let images = self
                    .deployments
                    .iter()
                    .find(|d| d.task_definition == td)
                    .map(|d| d.images.clone())
                    .unwrap_or_default();
                let images = if images.is_empty() {
                    self.deployments[pi].images.clone()
                } else {
                    images
                };
                let reason = format!(
                    "ECS deployment circuit breaker: rolling back to deploymentId {back_to}."
                );
                let message = format!(
                    "(service {}) rolling back to deployment {back_to}.",
                    self.name
                );
                self.event(env, message);
                self.start_deployment(env, td, images, Some(reason));
            }
            _ => {}
        }
    }

    fn to_json(&self) -> Value {
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .rev()
            .map(|d| {
                let tasks = self.tasks.iter().filter(|t| t.deployment == d.id);
                let running = tasks
                    .clone()
                    .filter(|t| matches!(t.state, TaskState::Running { .. }))
                    .count();
                let pending = tasks.count() - running;
                json!({
                    "id": d.id,
                    "status": if d.primary { "PRIMARY" } else { "ACTIVE" },
                    "taskDefinition": d.task_definition,
                    "desiredCount": d.desired,
                    "pendingCount": pending,
                    "runningCount": running,
                    "failedTasks": d.failed_tasks,
                    "createdAt": d.created_at,
                    "updatedAt": d.updated_at,
                    "launchType": self.launch_type,
                    "platformVersion": "1.4.0",
                    "platformFamily": "Linux",
                    "networkConfiguration": self.network_configuration,
                    "rolloutState": d.rollout.as_str(),
                    "rolloutStateReason": d.reason,
                })
            })
            .collect();
        let events: Vec<Value> = self
            .events
            .iter()
            .rev()
            .map(|(id, at, message)| json!({ "id": id, "createdAt": at, "message": message }))
            .collect();
        json!({
            "serviceArn": self.arn,
            "serviceName": self.name,
            "clusterArn": self.cluster_arn,
            "loadBalancers": self.load_balancers,
            "serviceRegistries": [],
            "status": self.status,
            "desiredCount": self.desired,
            "runningCount": self.count(true),
            "pendingCount": self.count(false),
            "launchType": self.launch_type,
            "platformVersion": "LATEST",
            "platformFamily": "Linux",
            "taskDefinition": self.task_definition,
            "deploymentConfiguration": self.deployment_configuration,
            "deployments": deployments,
            "events": events,
            "createdAt": self.created_at,
            "networkConfiguration": self.network_configuration,
            "schedulingStrategy": "REPLICA",
            "deploymentController": { "type": "ECS" },
            "enableECSManagedTags": false,
            "propagateTags": "NONE",
            "enableExecuteCommand": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_half_the_desired_count_within_3_and_200() {
        assert_eq!(failure_threshold(1), 3);
        assert_eq!(failure_threshold(6), 3);
        assert_eq!(failure_threshold(7), 4);
        assert_eq!(failure_threshold(10), 5);
        assert_eq!(failure_threshold(1000), 200);
    }

    #[test]
    fn names_come_from_arns() {
        assert_eq!(name_of("arn:aws:ecs:us-east-1:123:service/c/api"), "api");
        assert_eq!(name_of("api"), "api");
    }
}
