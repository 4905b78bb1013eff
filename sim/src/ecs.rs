//! Amazon ECS: clusters, task definitions and services whose deployments progress in time.
//!
//! Behaviour follows the ECS Developer Guide and botocore's `ecs` shapes (AWS-BEHAVIOUR.md §7):
//! - rolling update ("Deploy Amazon ECS services by replacing tasks"): the new deployment is
//!   PRIMARY and starts tasks while RUNNING+PENDING stays within `maximumPercent` of the
//!   desired count (rounded down); old tasks stop while the healthy ones stay at or above
//!   `minimumHealthyPercent` (rounded up); the rollout is COMPLETED when the PRIMARY runs
//!   `desiredCount` healthy tasks and no older deployment has any;
//! - a task is healthy when its load balancer target is healthy (each target group checks
//!   its own path, see [`crate::elb`]); without a load balancer, 40 s after it is RUNNING;
//!   a task whose target is unhealthy is stopped ("Task failed ELB health checks") and
//!   counts as failed — except during `healthCheckGracePeriodSeconds` after it started;
//! - a task leaving a load balancer drains first: its target is `draining` for the target
//!   group's deregistration delay, then the task stops;
//! - the deployment circuit breaker ("How the Amazon ECS deployment circuit breaker detects
//!   failures"): stage 1 counts tasks that never reach RUNNING, stage 2 tasks that fail their
//!   ELB health checks; at `failedTasks` ≥ the threshold (0.5 × desired count, at least 3,
//!   at most 200) the deployment turns FAILED and, with `rollback`, a new deployment back to
//!   the last COMPLETED one starts;
//! - "ECS Deployment State Change" events (SERVICE_DEPLOYMENT_IN_PROGRESS / COMPLETED /
//!   FAILED) go to EventBridge;
//! - deployment alarms ("How CloudWatch alarms detect Amazon ECS deployment failures";
//!   `deploymentConfiguration.alarms` {alarmNames, enable, rollback}): an alarm in ALARM
//!   while the deployment rolls out, or during the bake time after its tasks are in place
//!   (it stays IN_PROGRESS meanwhile), fails it and, with `rollback`, rolls back to the last
//!   COMPLETED deployment;
//! - service deployments ("View service history using Amazon ECS service deployments";
//!   ListServiceDeployments, DescribeServiceDeployments): one per deployment a user (or
//!   CloudFormation) starts, covering its rollback, with its status, alarms and circuit
//!   breaker;
//! - ECS's own blue/green, linear and canary deployments (`deploymentConfiguration.strategy`,
//!   with lifecycle hooks): see [`staged`].

mod staged;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cloudwatch::CloudWatch;
use crate::elb::Elb;
use crate::env::Env;
use crate::scenario::Failure;
use crate::wire::{ApiError, ApiResult};

/// Without a load balancer (or container health check), a task counts as healthy this long
/// after it is RUNNING ("Deploy Amazon ECS services by replacing tasks").
const HEALTHY_WITHOUT_LB_AFTER: f64 = 40.0;
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
    /// Lifecycle hook invocations waiting to be sent.
    invocations: Vec<(String, Value)>,
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
    /// `healthCheckGracePeriodSeconds`.
    grace: f64,
    /// Task definitions whose deployment the circuit breaker failed.
    failed_task_definitions: Vec<String>,
    /// The configuration event was emitted for this deployment (not to repeat it).
    stuck_reported: Option<String>,
    /// Tasks stopped in the last hour, oldest first: ListTasks/DescribeTasks show them
    /// ("stopped tasks appear in the returned results for at least one hour", ListTasks).
    stopped: Vec<StoppedTask>,
    /// Service deployments, oldest first.
    service_deployments: Vec<ServiceDeployment>,
    /// The deployment alarms' bake: (deployment id, when it ends).
    alarm_bake: Option<(String, f64)>,
}

/// A service deployment (bc:ecs ServiceDeployment): one per deployment started by a user, a
/// CloudFormation update or the service's creation; the rollback ECS starts after a failure
/// belongs to the service deployment that failed (its `rollback` member).
#[derive(Debug, Clone)]
struct ServiceDeployment {
    arn: String,
    /// The ECS deployment (`ecs-svc/…`) it started.
    deployment: String,
    /// The deployment of its rollback, when ECS rolled it back.
    rollback_deployment: Option<String>,
    source_revisions: Vec<String>,
    target_revision: String,
    /// bc:ecs ServiceDeploymentStatus.
    status: &'static str,
    status_reason: String,
    created_at: f64,
    updated_at: f64,
    finished_at: Option<f64>,
    stopped_at: Option<f64>,
    rollback: Option<(String, f64, String)>,
    /// bc:ecs ServiceDeploymentRollbackMonitorsStatus of the alarms (DISABLED without them),
    /// their names and the ones that triggered.
    alarms: (&'static str, Vec<String>, Vec<String>),
    /// The same of the circuit breaker, with its failure count and threshold.
    circuit_breaker: (&'static str, i64, i64),
    deployment_configuration: Value,
    /// A blue/green, linear or canary deployment's progress.
    staged: Option<staged::Staged>,
}

impl ServiceDeployment {
    fn brief(&self, service: &Service) -> Value {
        json!({
            "serviceDeploymentArn": self.arn,
            "serviceArn": service.arn,
            "clusterArn": service.cluster_arn,
            "createdAt": self.created_at,
            "startedAt": self.created_at,
            "finishedAt": self.finished_at,
            "targetServiceRevisionArn": self.target_revision,
            "status": self.status,
            "statusReason": self.status_reason,
        })
    }

    fn to_json(&self, service: &Service) -> Value {
        let revision = |arn: &String| {
            let d = service
                .deployments
                .iter()
                .find(|d| service.revision_of(&d.id) == *arn);
            let tasks = service
                .tasks
                .iter()
                .filter(|t| d.is_some_and(|d| d.id == t.deployment));
            let running = tasks
                .clone()
                .filter(|t| !matches!(t.state, TaskState::Pending { .. }))
                .count();
            json!({
                "arn": arn,
                "requestedTaskCount": d.map_or(0, |d| d.desired),
                "runningTaskCount": running,
                "pendingTaskCount": tasks.count() - running,
            })
        };
        let mut out = json!({
            "serviceDeploymentArn": self.arn,
            "serviceArn": service.arn,
            "clusterArn": service.cluster_arn,
            "createdAt": self.created_at,
            "startedAt": self.created_at,
            "updatedAt": self.updated_at,
            "sourceServiceRevisions": self.source_revisions.iter().map(revision).collect::<Vec<_>>(),
            "targetServiceRevision": revision(&self.target_revision),
            "status": self.status,
            "statusReason": self.status_reason,
            "deploymentConfiguration": self.deployment_configuration,
            "deploymentCircuitBreaker": {
                "status": self.circuit_breaker.0,
                "failureCount": self.circuit_breaker.1,
                "threshold": self.circuit_breaker.2,
            },
            "alarms": {
                "status": self.alarms.0,
                "alarmNames": self.alarms.1,
                "triggeredAlarmNames": self.alarms.2,
            },
        });
        if let Some(t) = self.finished_at {
            out["finishedAt"] = json!(t);
        }
        if let Some(t) = self.stopped_at {
            out["stoppedAt"] = json!(t);
        }
        if let Some((reason, at, revision)) = &self.rollback {
            out["rollback"] =
                json!({"reason": reason, "startedAt": at, "serviceRevisionArn": revision});
        }
        if let Some(st) = &self.staged {
            st.describe(&mut out);
        }
        out
    }
}

/// Why ECS failed a deployment.
#[derive(Debug, Clone, PartialEq)]
enum Failed {
    /// The circuit breaker.
    CircuitBreaker,
    /// Deployment alarms in ALARM (their names).
    Alarms(Vec<String>),
    /// StopServiceDeployment asked for a rollback.
    Stopped,
}

/// A stopped task, as DescribeTasks reports it.
#[derive(Debug, Clone)]
struct StoppedTask {
    id: String,
    deployment: String,
    task_definition: String,
    /// bc:ecs Task.stopCode (TaskStopCode,
    /// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html): `EssentialContainerExited` for a crash,
    /// `ServiceSchedulerInitiated` for one the service scheduler stopped.
    stop_code: &'static str,
    /// bc:ecs Task.stoppedReason.
    reason: String,
    /// The images whose containers exited on their own, with their exit codes (the others
    /// were stopped by ECS: their exit codes are not modelled, so none is reported).
    exited: Vec<(String, i64)>,
    /// What the containers of these images printed (their `awslogs` streams).
    logs: Vec<(String, Vec<String>)>,
    started_at: Option<f64>,
    stopped_at: f64,
}

/// How long stopped tasks stay listed: one hour (ListTasks: "stopped tasks appear in the
/// returned results for at least one hour",
/// https://docs.aws.amazon.com/cli/latest/reference/ecs/list-tasks.html).
const STOPPED_TASKS_KEPT: f64 = 3600.0;

/// A deployment's `rolloutState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// IN_PROGRESS.
    InProgress,
    /// COMPLETED.
    Completed,
    /// FAILED.
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
    /// PROVISIONING/PENDING until `ready_at`.
    Pending { ready_at: f64 },
    /// RUNNING since `since`.
    Running { since: f64 },
    /// RUNNING, deregistered from its target groups, stopping at `stop_at`.
    Draining { since: f64, stop_at: f64 },
}

#[derive(Debug)]
struct Task {
    id: String,
    deployment: String,
    ip: String,
    state: TaskState,
    /// Whether it has counted as healthy (its first healthy moment resets the circuit
    /// breaker's count).
    was_healthy: bool,
    /// The one target group it is registered with, when a blue/green deployment decides
    /// (blue tasks in the service's target group, green ones in the alternate); `None`:
    /// every target group of the service's load balancers.
    target_group: Option<String>,
}

/// A load balancer target backed by a task: ELBv2 judges its health.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTarget {
    /// The task id.
    pub task: String,
    /// The task's private IP (awsvpc network mode: targets are IPs).
    pub ip: String,
    /// The container port registered.
    pub port: i64,
    /// When it was registered (the task became RUNNING).
    pub registered_at: f64,
    /// Deregistered, draining.
    pub draining: bool,
    /// The images the task runs.
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

/// A task's ARN in a cluster: `arn:…:task/<cluster>/<id>` (the long ARN format).
fn task_arn(cluster_arn: &str, id: &str) -> String {
    format!("{}/{id}", cluster_arn.replacen(":cluster/", ":task/", 1))
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
            "DeregisterTaskDefinition" => self.deregister_task_definition(env, input),
            "CreateService" => self.create_service(env, input),
            "UpdateService" => self.update_service(env, input),
            "DescribeServices" => self.describe_services(input),
            "DeleteService" => self.delete_service(env, input),
            "ListServices" => self.list_services(input),
            "ListTasks" => self.list_tasks(env, input),
            "ListServiceDeployments" => self.list_service_deployments(input),
            "DescribeServiceDeployments" => self.describe_service_deployments(input),
            "StopServiceDeployment" => self.stop_service_deployment(env, input),
            "DescribeTasks" => self.describe_tasks(env, input),
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

    /// Registers a task definition revision from an ECS API shaped (camelCase) document,
    /// validated and normalised as ECS does (see [`crate::taskdef`]).
    pub fn register(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let family = required_str(input, "family")?.to_owned();
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
        let mut td = crate::taskdef::normalise(input)?;
        let revisions = self.task_definitions.entry(family.clone()).or_default();
        let revision = revisions.len() + 1;
        td.insert(
            "taskDefinitionArn".into(),
            json!(env.arn("ecs", &format!("task-definition/{family}:{revision}"))),
        );
        td.insert("revision".into(), json!(revision));
        td.insert("status".into(), json!("ACTIVE"));
        td.insert("registeredAt".into(), json!(env.now));
        // Who registered it: the simulator does not know the caller; AWS gives the caller's
        // ARN (botocore `TaskDefinition.registeredBy`).
        td.insert(
            "registeredBy".into(),
            json!(format!("arn:aws:iam::{}:root", env.account)),
        );
        let td = Value::Object(td);
        revisions.push(td.clone());
        Ok(td)
    }

    /// Deregisters a revision: INACTIVE, as DeregisterTaskDefinition and CloudFormation's
    /// cleanup of a replaced `AWS::ECS::TaskDefinition` leave it ("Deregister an Amazon ECS
    /// task definition revision"). Running services keep it; none may move onto it.
    pub fn deregister(&mut self, env: &Env, arn: &str) -> ApiResult<Value> {
        let td = self.task_definition_mut(arn).ok_or_else(|| {
            ApiError::new(
                "ClientException",
                "The specified task definition does not exist.",
            )
        })?;
        td["status"] = json!("INACTIVE");
        td["deregisteredAt"] = json!(env.now);
        Ok(td.clone())
    }

    fn deregister_task_definition(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let reference = required_str(input, "taskDefinition")?;
        if !reference.contains(':') {
            return Err(ApiError::new(
                "ClientException",
                "A revision is required: family:revision or the full ARN.",
            ));
        }
        Ok(json!({ "taskDefinition": self.deregister(env, reference)? }))
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
            // "If a revision isn't specified, the latest ACTIVE revision is used."
            // (DescribeTaskDefinition, botocore `taskDefinition` member)
            None => revisions.iter().rev().find(|t| t["status"] == "ACTIVE"),
        }
    }

    fn task_definition_mut(&mut self, arn: &str) -> Option<&mut Value> {
        let reference = arn.rsplit("task-definition/").next().unwrap_or(arn);
        let (family, revision) = reference.split_once(':')?;
        let r: usize = revision.parse().ok()?;
        self.task_definitions
            .get_mut(family)?
            .get_mut(r.checked_sub(1)?)
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
        // UNVERIFIED code: field reports show "TaskDefinition is inactive" as an
        // InvalidParameterException on RunTask and a forced UpdateService; the Developer Guide
        // says an INACTIVE revision cannot create services or be the target of an update.
        if td["status"] == "INACTIVE" {
            return Err(ApiError::new(
                "InvalidParameterException",
                "TaskDefinition is inactive",
            ));
        }
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
        staged::validate(
            &deployment_configuration,
            input
                .get("loadBalancers")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        )?;
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
            stopped: Vec::new(),
            events: Vec::new(),
            last_completed: None,
            grace: input
                .get("healthCheckGracePeriodSeconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            stuck_reported: None,
            failed_task_definitions: Vec::new(),
            service_deployments: Vec::new(),
            alarm_bake: None,
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
        // Checked before anything changes: a refused update changes nothing.
        let mut dc = service.deployment_configuration.clone();
        if let Some(Value::Object(given)) = input.get("deploymentConfiguration") {
            for (k, v) in given {
                dc[k] = v.clone();
            }
        }
        let load_balancers = match input.get("loadBalancers").and_then(Value::as_array) {
            Some(lbs) => lbs.clone(),
            None => service.load_balancers.clone(),
        };
        staged::validate(&dc, &load_balancers)?;
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
        service.deployment_configuration = dc;
        service.load_balancers = load_balancers;
        // Changing the grace period "doesn't trigger a new service deployment" (bc:ecs
        // UpdateServiceRequest.healthCheckGracePeriodSeconds).
        if let Some(g) = input
            .get("healthCheckGracePeriodSeconds")
            .and_then(Value::as_f64)
        {
            service.grace = g;
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

    /// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListTasks.html
    /// (bc:ecs ListTasks): `cluster`, `serviceName`, `desiredStatus` (RUNNING by default;
    /// STOPPED "limits the results to tasks that Amazon ECS has set the desired status to
    /// STOPPED"; PENDING returns nothing) → `taskArns`. A draining task's desired status is
    /// already STOPPED. Stopped tasks are listed for an hour.
    fn list_tasks(&self, env: &Env, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?;
        let desired = str_field(input, "desiredStatus").unwrap_or("RUNNING");
        // bc:ecs DesiredStatus: RUNNING | PENDING | STOPPED.
        if !matches!(desired, "RUNNING" | "PENDING" | "STOPPED") {
            return Err(ApiError::new(
                "InvalidParameterException",
                format!("Invalid desiredStatus: {desired}"),
            ));
        }
        let service = str_field(input, "serviceName").map(name_of);
        // bc:ecs ListTasks errors: ServiceNotFoundException for a service not in the cluster.
        if let Some(n) = service {
            if !self
                .services
                .contains_key(&(cluster.name.clone(), n.to_owned()))
            {
                return Err(ApiError::new(
                    "ServiceNotFoundException",
                    "Service not found.",
                ));
            }
        }
        let mut arns = Vec::new();
        for s in self
            .services
            .values()
            .filter(|s| s.cluster == cluster.name && service.is_none_or(|n| n == s.name))
        {
            let arn = |id: &str| task_arn(&cluster.arn, id);
            match desired {
                "RUNNING" => arns.extend(
                    s.tasks
                        .iter()
                        .filter(|t| !matches!(t.state, TaskState::Draining { .. }))
                        .map(|t| arn(&t.id)),
                ),
                "STOPPED" => {
                    arns.extend(
                        s.tasks
                            .iter()
                            .filter(|t| matches!(t.state, TaskState::Draining { .. }))
                            .map(|t| arn(&t.id)),
                    );
                    arns.extend(
                        s.stopped
                            .iter()
                            .rev()
                            .filter(|t| env.now - t.stopped_at < STOPPED_TASKS_KEPT)
                            .map(|t| arn(&t.id)),
                    );
                }
                _ => {}
            }
        }
        Ok(json!({ "taskArns": arns }))
    }

    /// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html
    /// (bc:ecs DescribeTasks): `cluster`, `tasks` (ids or ARNs, at most 100) → `tasks` and
    /// `failures` (`MISSING`). A stopped task has `lastStatus`/`desiredStatus` STOPPED,
    /// `stopCode`, `stoppedReason`, `stoppedAt`, and its containers' `exitCode` when they
    /// exited on their own.
    fn describe_tasks(&self, env: &Env, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?;
        let wanted: Vec<&str> = input
            .get("tasks")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if wanted.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterException",
                "Tasks cannot be empty.",
            ));
        }
        if wanted.len() > 100 {
            return Err(ApiError::new(
                "InvalidParameterException",
                "DescribeTasks accepts at most 100 tasks per call.",
            ));
        }
        let containers = |td: &str| -> Vec<(String, String)> {
            self.task_definition(td)
                .and_then(|t| t["containerDefinitions"].as_array())
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_owned(),
                                c["image"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for w in &wanted {
            let id = w.rsplit('/').next().unwrap_or(w);
            let arn = task_arn(&cluster.arn, id);
            let found = self.services.values().filter(|s| s.cluster == cluster.name).find_map(|s| {
                if let Some(t) = s.tasks.iter().find(|t| t.id == id) {
                    let td = s
                        .deployments
                        .iter()
                        .find(|d| d.id == t.deployment)
                        .map(|d| d.task_definition.clone())
                        .unwrap_or_default();
                    let (last, desired) = match t.state {
                        TaskState::Pending { .. } => ("PENDING", "RUNNING"),
                        TaskState::Running { .. } => ("RUNNING", "RUNNING"),
                        TaskState::Draining { .. } => ("DEACTIVATING", "STOPPED"),
                    };
                    let cs: Vec<Value> = containers(&td)
                        .into_iter()
                        .map(|(name, image)| json!({"taskArn": arn, "name": name, "image": image, "lastStatus": last}))
                        .collect();
                    return Some(json!({
                        "taskArn": arn, "clusterArn": cluster.arn, "taskDefinitionArn": td,
                        "group": format!("service:{}", s.name), "startedBy": t.deployment,
                        "lastStatus": last, "desiredStatus": desired, "launchType": s.launch_type,
                        "containers": cs,
                    }));
                }
                s.stopped
                    .iter()
                    .find(|t| t.id == id && env.now - t.stopped_at < STOPPED_TASKS_KEPT)
                    .map(|t| {
                        let cs: Vec<Value> = containers(&t.task_definition)
                            .into_iter()
                            .map(|(name, image)| {
                                let mut c = json!({"taskArn": arn, "name": name, "image": image, "lastStatus": "STOPPED"});
                                if let Some((_, code)) = t.exited.iter().find(|(i, _)| *i == image) {
                                    c["exitCode"] = json!(code);
                                }
                                c
                            })
                            .collect();
                        json!({
                            "taskArn": arn, "clusterArn": cluster.arn,
                            "taskDefinitionArn": t.task_definition,
                            "group": format!("service:{}", s.name), "startedBy": t.deployment,
                            "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
                            "stopCode": t.stop_code, "stoppedReason": t.reason,
                            "startedAt": t.started_at, "stoppedAt": t.stopped_at,
                            "launchType": s.launch_type, "containers": cs,
                        })
                    })
            });
            match found {
                Some(t) => tasks.push(t),
                None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
            }
        }
        Ok(json!({ "tasks": tasks, "failures": failures }))
    }

    /// CloudWatch Logs' GetLogEvents for the `awslogs` streams of the simulated tasks: a
    /// stream is `<awslogs-stream-prefix>/<container name>/<task id>` ("Using the awslogs
    /// log driver", Amazon ECS Developer Guide,
    /// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html), in the
    /// task definition's `awslogs-group`; it holds what the scenario says a crashing
    /// container printed, timed at its stop. A group no task definition names is "The
    /// specified log group does not exist.", a stream no stopped task has "The specified log
    /// stream does not exist." (ResourceNotFoundException, CloudWatch Logs API reference,
    /// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html).
    /// Streams live as long as the simulator keeps the stopped task (an hour).
    pub fn log_events(&self, group: &str, stream: &str) -> ApiResult<Vec<(f64, String)>> {
        let awslogs = |c: &Value| -> Option<(String, String)> {
            let config = &c["logConfiguration"];
            if config["logDriver"].as_str() != Some("awslogs") {
                return None;
            }
            let options = &config["options"];
            Some((
                options["awslogs-group"].as_str()?.to_owned(),
                options["awslogs-stream-prefix"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ))
        };
        let group_exists = self.task_definitions.values().flatten().any(|td| {
            td["containerDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| awslogs(c).is_some_and(|(g, _)| g == group))
        });
        if !group_exists {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            ));
        }
        let no_stream = || {
            ApiError::new(
                "ResourceNotFoundException",
                "The specified log stream does not exist.",
            )
        };
        let mut parts = stream.rsplitn(3, '/');
        let (task_id, container, prefix) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(c), Some(p)) => (t, c, p),
            _ => return Err(no_stream()),
        };
        let stopped = self
            .services
            .values()
            .flat_map(|s| s.stopped.iter())
            .find(|t| t.id == task_id)
            .ok_or_else(no_stream)?;
        let def = self
            .task_definition(&stopped.task_definition)
            .and_then(|td| td["containerDefinitions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(container)))
            .ok_or_else(no_stream)?;
        if awslogs(def) != Some((group.to_owned(), prefix.to_owned())) {
            return Err(no_stream());
        }
        let image = def["image"].as_str().unwrap_or_default();
        Ok(stopped
            .logs
            .iter()
            .filter(|(i, _)| i == image)
            .flat_map(|(_, lines)| lines.iter().map(|l| (stopped.stopped_at, l.clone())))
            .collect())
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

    /// Moves every service forward to `env.now`; `elb` judges the tasks' targets,
    /// `cloudwatch` holds the deployment alarms.
    pub fn advance(&mut self, env: &mut Env, elb: &mut Elb, cloudwatch: &CloudWatch) {
        for service in self.services.values_mut() {
            if service.status == "ACTIVE" {
                let mut shifts = Vec::new();
                service.advance(
                    env,
                    elb,
                    cloudwatch,
                    &mut self.next_ip,
                    &mut self.invocations,
                    &mut shifts,
                );
                // ECS's traffic shifts (its ModifyRule calls).
                for (rule, groups) in shifts {
                    elb.set_forward(&rule, groups);
                }
            }
        }
    }

    /// The lifecycle hook invocations due: (hook target ARN, payload), taken.
    pub fn take_invocations(&mut self) -> Vec<(String, Value)> {
        std::mem::take(&mut self.invocations)
    }

    /// ListServiceDeployments: `service` (required; name or ARN), `cluster`, `status` (a list;
    /// all when absent), `createdAt` {before, after}, `maxResults` 1–100 (default 20),
    /// `nextToken`. Newest first.
    fn list_service_deployments(&self, input: &Value) -> ApiResult<Value> {
        let cluster = self.cluster(input)?.name.clone();
        let name = name_of(required_str(input, "service")?).to_owned();
        let service = self
            .services
            .get(&(cluster, name))
            .ok_or_else(|| ApiError::new("ServiceNotFoundException", "Service not found."))?;
        let statuses: Vec<&str> = input["status"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let after = input["createdAt"]["after"].as_f64();
        let before = input["createdAt"]["before"].as_f64();
        let max = input["maxResults"].as_u64().unwrap_or(20);
        if !(1..=100).contains(&max) {
            return Err(ApiError::new(
                "InvalidParameterException",
                "maxResults must be between 1 and 100.",
            ));
        }
        let start: usize = match input["nextToken"].as_str() {
            None => 0,
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::new("InvalidParameterException", "Invalid nextToken."))?,
        };
        let matching: Vec<&ServiceDeployment> = service
            .service_deployments
            .iter()
            .rev()
            .filter(|d| statuses.is_empty() || statuses.contains(&d.status))
            .filter(|d| after.is_none_or(|a| d.created_at >= a))
            .filter(|d| before.is_none_or(|b| d.created_at <= b))
            .collect();
        if start > matching.len() {
            return Err(ApiError::new(
                "InvalidParameterException",
                "Invalid nextToken.",
            ));
        }
        let end = start.saturating_add(max as usize).min(matching.len());
        let page: Vec<Value> = matching
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|d| d.brief(service))
            .collect();
        let mut out = json!({ "serviceDeployments": page });
        if end < matching.len() {
            out["nextToken"] = json!(end.to_string());
        }
        Ok(out)
    }

    /// DescribeServiceDeployments: `serviceDeploymentArns` (at most 20: "You can specify a
    /// maximum of 20 ARNs"); an unknown one is a failure with reason `MISSING`.
    fn describe_service_deployments(&self, input: &Value) -> ApiResult<Value> {
        let arns: Vec<&str> = input["serviceDeploymentArns"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if arns.len() > 20 {
            return Err(ApiError::new(
                "InvalidParameterException",
                "You can specify a maximum of 20 service deployment ARNs.",
            ));
        }
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            let hit = self.services.values().find_map(|s| {
                s.service_deployments
                    .iter()
                    .find(|d| d.arn == *arn)
                    .map(|d| d.to_json(s))
            });
            match hit {
                Some(d) => found.push(d),
                None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
            }
        }
        Ok(json!({ "serviceDeployments": found, "failures": failures }))
    }

    /// The targets registered with a target group: the RUNNING (or draining) tasks of every
    /// service whose load balancers name it.
    pub fn targets(&self, target_group_arn: &str) -> Vec<TaskTarget> {
        let mut out = Vec::new();
        for s in self.services.values().filter(|s| s.status == "ACTIVE") {
            for lb in &s.load_balancers {
                let main = str_field(lb, "targetGroupArn") == Some(target_group_arn);
                let alternate = lb
                    .pointer("/advancedConfiguration/alternateTargetGroupArn")
                    .and_then(Value::as_str)
                    == Some(target_group_arn);
                if !main && !alternate {
                    continue;
                }
                let port = lb
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(80);
                for t in &s.tasks {
                    let registered = match t.target_group.as_deref() {
                        Some(own) => own == target_group_arn,
                        None => main,
                    };
                    if !registered {
                        continue;
                    }
                    let (registered_at, draining) = match t.state {
                        TaskState::Pending { .. } => continue,
                        TaskState::Running { since } => (since, false),
                        TaskState::Draining { since, .. } => (since, true),
                    };
                    out.push(TaskTarget {
                        task: t.id.clone(),
                        ip: t.ip.clone(),
                        port,
                        registered_at,
                        draining,
                        images: s.images_of_deployment(&t.deployment),
                    });
                }
            }
        }
        out
    }

    /// Whether the circuit breaker failed a deployment of `td` on the service (remembered after
    /// the rollback replaced it).
    pub fn circuit_breaker_failed(&self, cluster: &str, service: &str, td: &str) -> bool {
        self.services
            .get(&(name_of(cluster).to_owned(), name_of(service).to_owned()))
            .is_some_and(|s| s.failed_task_definitions.iter().any(|t| t == td))
    }

    /// The rollout of the newest deployment of task definition `td` on a service, with its
    /// reason; `None` when the service is gone or has no deployment of `td` any more.
    pub fn rollout_of(&self, cluster: &str, service: &str, td: &str) -> Option<(Rollout, String)> {
        let s = self
            .services
            .get(&(name_of(cluster).to_owned(), name_of(service).to_owned()))
            .filter(|s| s.status == "ACTIVE")?;
        s.deployments
            .iter()
            .rev()
            .find(|d| d.task_definition == td)
            .map(|d| (d.rollout, d.reason.clone()))
    }
}

impl Service {
    fn primary(&self) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.primary)
    }

    /// The service revision ARN of a deployment: one revision per deployment here.
    fn revision_of(&self, deployment: &str) -> String {
        let number = deployment.trim_start_matches("ecs-svc/");
        self.arn.replacen(":service/", ":service-revision/", 1) + "/" + number
    }

    /// The deployment alarms' names when they are enabled.
    fn deployment_alarms(&self) -> Option<(Vec<String>, bool)> {
        let a = &self.deployment_configuration["alarms"];
        (a["enable"].as_bool() == Some(true)).then(|| {
            let names = a["alarmNames"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            (names, a["rollback"].as_bool() == Some(true))
        })
    }

    /// The service deployment that started (or rolls back with) deployment `id`.
    fn service_deployment_mut(&mut self, id: &str) -> Option<&mut ServiceDeployment> {
        self.service_deployments
            .iter_mut()
            .rev()
            .find(|d| d.deployment == id || d.rollback_deployment.as_deref() == Some(id))
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

    /// RUNNING tasks (draining ones still run) when `running`, else PENDING ones.
    fn count(&self, running: bool) -> i64 {
        self.tasks
            .iter()
            .filter(|t| !matches!(t.state, TaskState::Pending { .. }) == running)
            .count() as i64
    }

    /// The target groups of the service that exist.
    fn target_groups<'a>(&'a self, elb: &'a Elb) -> impl Iterator<Item = &'a str> + 'a {
        self.load_balancers
            .iter()
            .filter_map(|lb| str_field(lb, "targetGroupArn"))
            .filter(move |tg| elb.has_target_group(tg))
    }

    /// Whether a task counts as healthy now, and when (if ever) its target turned unhealthy
    /// and which target group says so.
    fn health(&self, env: &Env, elb: &Elb, t: &Task) -> (bool, Option<(f64, String)>) {
        let TaskState::Running { since } = t.state else {
            return (false, None);
        };
        let tgs: Vec<&str> = match &t.target_group {
            Some(tg) => vec![tg.as_str()],
            None => self.target_groups(elb).collect(),
        };
        if tgs.is_empty() {
            return (env.now >= since + HEALTHY_WITHOUT_LB_AFTER, None);
        }
        let images = self.images_of_deployment(&t.deployment);
        let mut healthy = true;
        let mut unhealthy: Option<(f64, String)> = None;
        for tg in tgs {
            let Some(v) = elb.verdict(tg, since, |path| {
                env.scenario.answer(images.iter().map(String::as_str), path)
            }) else {
                continue;
            };
            healthy &= v.healthy(env.now);
            if let Some(at) = v.unhealthy_at {
                if unhealthy.as_ref().is_none_or(|(u, _)| at < *u) {
                    unhealthy = Some((at, tg.to_owned()));
                }
            }
        }
        (healthy, unhealthy)
    }

    /// Stops a task: one behind a load balancer drains for the longest deregistration delay
    /// of its target groups first; `false` when it is gone at once.
    fn stop(&mut self, elb: &Elb, index: usize, now: f64) -> bool {
        let own = self.tasks[index].target_group.clone();
        let delay = own
            .as_deref()
            .map_or_else(|| self.target_groups(elb).collect(), |tg| vec![tg])
            .into_iter()
            .map(|tg| elb.deregistration_delay(tg))
            .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
        match (delay, self.tasks[index].state) {
            (Some(d), TaskState::Running { since }) => {
                self.tasks[index].state = TaskState::Draining {
                    since,
                    stop_at: now + d,
                };
                true
            }
            _ => {
                let t = self.tasks.remove(index);
                let reason = self.scaling_reason(&t);
                self.record_stop(&t, now, "ServiceSchedulerInitiated", &reason, Vec::new());
                false
            }
        }
    }

    /// Why the scheduler stopped a healthy task: the primary deployment's scaling (the
    /// stoppedReason ECS gives, "Scaling activity initiated by (deployment ecs-svc/…)").
    fn scaling_reason(&self, t: &Task) -> String {
        let by = self
            .primary()
            .map_or(t.deployment.as_str(), |d| d.id.as_str());
        format!("Scaling activity initiated by (deployment {by})")
    }

    /// Keeps `t` among the stopped tasks (and forgets those stopped over an hour ago).
    fn record_stop(
        &mut self,
        t: &Task,
        now: f64,
        stop_code: &'static str,
        reason: &str,
        exited: Vec<(String, i64)>,
    ) {
        self.stopped
            .retain(|s| now - s.stopped_at < STOPPED_TASKS_KEPT);
        let task_definition = self
            .deployments
            .iter()
            .find(|d| d.id == t.deployment)
            .map(|d| d.task_definition.clone())
            .unwrap_or_default();
        self.stopped.push(StoppedTask {
            id: t.id.clone(),
            deployment: t.deployment.clone(),
            task_definition,
            stop_code,
            reason: reason.to_owned(),
            exited,
            logs: Vec::new(),
            started_at: match t.state {
                TaskState::Running { since } | TaskState::Draining { since, .. } => Some(since),
                TaskState::Pending { .. } => None,
            },
            stopped_at: now,
        });
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
        if reason.is_none() {
            // A service deployment of its own ("a new service deployment is created when a
            // user creates a service, … updates one or more service properties that require
            // a deployment"). One still in progress is replaced: STOPPED (modelled; ECS's
            // wording of that case is not documented).
            for d in &mut self.service_deployments {
                if matches!(d.status, "PENDING" | "IN_PROGRESS") {
                    d.status = "STOPPED";
                    d.status_reason = "A newer service deployment replaced it.".into();
                    d.stopped_at = Some(env.now);
                    d.finished_at = Some(env.now);
                    d.updated_at = env.now;
                }
            }
            let alarms = match self.deployment_alarms() {
                Some((names, _)) => ("MONITORING", names, vec![]),
                None => ("DISABLED", vec![], vec![]),
            };
            let (cb, _) = self.circuit_breaker();
            let source_revisions = self
                .deployments
                .iter()
                .filter(|d| self.tasks.iter().any(|t| t.deployment == d.id) || d.primary)
                .map(|d| self.revision_of(&d.id))
                .collect();
            self.service_deployments.push(ServiceDeployment {
                arn: self.arn.replacen(":service/", ":service-deployment/", 1)
                    + "/"
                    + &env.ids.hex32()[..21],
                deployment: id.clone(),
                rollback_deployment: None,
                source_revisions,
                target_revision: self.revision_of(&id),
                status: "IN_PROGRESS",
                status_reason: String::new(),
                created_at: env.now,
                updated_at: env.now,
                finished_at: None,
                stopped_at: None,
                rollback: None,
                alarms,
                circuit_breaker: (
                    if cb { "MONITORING" } else { "DISABLED" },
                    0,
                    failure_threshold(self.desired),
                ),
                deployment_configuration: self.deployment_configuration.clone(),
                staged: None,
            });
            self.stage_if_strategy(env, &id);
        }
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

    /// Nothing can change: one COMPLETED deployment at its desired count, every task running
    /// and already healthy (the common case; the clock ticks every service 20 times a second).
    fn steady(&self) -> bool {
        self.deployments.len() == 1
            && self.deployments[0].rollout == Rollout::Completed
            && self.tasks.len() as i64 == self.deployments[0].desired
            && self
                .tasks
                .iter()
                .all(|t| t.was_healthy && matches!(t.state, TaskState::Running { .. }))
    }

    fn advance(
        &mut self,
        env: &mut Env,
        elb: &Elb,
        cloudwatch: &CloudWatch,
        next_ip: &mut u32,
        invocations: &mut Vec<(String, Value)>,
        shifts: &mut Vec<(String, Vec<(String, u32)>)>,
    ) {
        if self.steady() {
            return;
        }
        let now = env.now;
        // Tasks whose start is due either run or (crashing image) stop; draining ones whose
        // delay is over stop; running ones whose target is unhealthy past the grace period
        // stop and count as failed; one that turns healthy resets its deployment's count.
        let mut failed: Vec<(String, String, String)> = Vec::new();
        let mut drained = Vec::new();
        let mut i = 0;
        while i < self.tasks.len() {
            match self.tasks[i].state {
                TaskState::Pending { ready_at } if ready_at <= now => {
                    let images = self.images_of_deployment(&self.tasks[i].deployment);
                    if env
                        .scenario
                        .image_rule(images.iter().map(String::as_str), Failure::Crash)
                        .is_some()
                    {
                        let t = self.tasks.remove(i);
                        // The crashing image's process exits 1: the task stops on its
                        // essential container (bc:ecs TaskStopCode EssentialContainerExited).
                        let exited = images
                            .iter()
                            .filter(|image| {
                                env.scenario
                                    .image_rule([image.as_str()], Failure::Crash)
                                    .is_some()
                            })
                            .map(|image| (image.clone(), 1))
                            .collect();
                        self.record_stop(
                            &t,
                            now,
                            "EssentialContainerExited",
                            "Essential container in task exited",
                            exited,
                        );
                        // What the crashing containers printed (the scenario's `logs`).
                        let logs: Vec<(String, Vec<String>)> = images
                            .iter()
                            .filter_map(|image| {
                                env.scenario
                                    .image_rule([image.as_str()], Failure::Crash)
                                    .filter(|r| !r.logs.is_empty())
                                    .map(|r| (image.clone(), r.logs.clone()))
                            })
                            .collect();
                        if let Some(stopped) = self.stopped.last_mut() {
                            stopped.logs = logs;
                        }
                        failed.push((
                            t.deployment,
                            t.id,
                            "Essential container in task exited".into(),
                        ));
                        continue;
                    }
                    self.tasks[i].state = TaskState::Running { since: ready_at };
                }
                TaskState::Draining { stop_at, .. } if stop_at <= now => {
                    let t = self.tasks.remove(i);
                    let reason = self.scaling_reason(&t);
                    self.record_stop(&t, now, "ServiceSchedulerInitiated", &reason, Vec::new());
                    drained.push(format!("(task {})", t.id));
                    continue;
                }
                _ => {}
            }
            if let TaskState::Running { since } = self.tasks[i].state {
                let (healthy, unhealthy) = self.health(env, elb, &self.tasks[i]);
                if healthy && !self.tasks[i].was_healthy {
                    // "Once a service deployment has one or more successfully running
                    // tasks, the failed task count resets to zero" (bc:ecs Deployment.failedTasks).
                    self.tasks[i].was_healthy = true;
                    let dep = self.tasks[i].deployment.clone();
                    if let Some(d) = self.deployments.iter_mut().find(|d| d.id == dep) {
                        d.failed_tasks = 0;
                    }
                }
                if let Some((at, tg)) = unhealthy {
                    // The grace period: ECS "ignores unhealthy Elastic Load Balancing …
                    // health checks after a task has first started" (bc:ecs
                    // healthCheckGracePeriodSeconds).
                    if now >= at.max(since + self.grace) {
                        let t = self.tasks.remove(i);
                        let reason =
                            format!("Task failed ELB health checks in (target-group {tg})");
                        self.record_stop(&t, now, "ServiceSchedulerInitiated", &reason, Vec::new());
                        failed.push((t.deployment, t.id, reason));
                        continue;
                    }
                }
            }
            i += 1;
        }
        if !drained.is_empty() {
            let message = format!(
                "(service {}) has stopped {} running tasks: {}.",
                self.name,
                drained.len(),
                drained.join(" ")
            );
            self.event(env, message);
        }
        for (deployment, task, why) in failed {
            if let Some(d) = self.deployments.iter_mut().find(|d| d.id == deployment) {
                d.failed_tasks += 1;
                d.updated_at = now;
            }
            let message = format!(
                "(service {}) has stopped 1 running tasks: (task {task}). Reason: {why}",
                self.name
            );
            self.event(env, message);
        }

        let Some(pi) = self.deployments.iter().rposition(|d| d.primary) else {
            return;
        };
        let (enabled, rollback) = self.circuit_breaker();
        let threshold = failure_threshold(self.deployments[pi].desired);
        let failed_tasks = self.deployments[pi].failed_tasks;
        let p_id = self.deployments[pi].id.clone();
        if let Some(sd) = self
            .service_deployment_mut(&p_id)
            .filter(|sd| sd.deployment == p_id)
        {
            sd.circuit_breaker.1 = failed_tasks;
        }
        if self.deployments[pi].rollout == Rollout::InProgress
            && enabled
            && failed_tasks >= threshold
        {
            self.fail(env, pi, rollback, Failed::CircuitBreaker, shifts);
            return;
        }
        // StopServiceDeployment asked for a rollback (ROLLBACK_REQUESTED).
        if self.deployments[pi].rollout == Rollout::InProgress
            && self
                .service_deployments
                .iter()
                .any(|sd| sd.deployment == p_id && sd.status == "ROLLBACK_REQUESTED")
        {
            self.fail(env, pi, true, Failed::Stopped, shifts);
            return;
        }
        // Deployment alarms, watched while a deployment a user started rolls out and bakes
        // (not a rollback ECS started).
        let user_started = self
            .service_deployments
            .iter()
            .any(|sd| sd.deployment == p_id && sd.status == "IN_PROGRESS");
        if let Some((names, rollback)) = self.deployment_alarms().filter(|_| user_started) {
            let firing: Vec<String> = names
                .iter()
                .filter(|n| cloudwatch.in_alarm(n).is_some())
                .cloned()
                .collect();
            if self.deployments[pi].rollout == Rollout::InProgress && !firing.is_empty() {
                self.fail(env, pi, rollback, Failed::Alarms(firing), shifts);
                return;
            }
        }
        if self.deployments[pi].rollout == Rollout::Failed {
            return; // ECS launches no more tasks for a FAILED deployment.
        }
        if let Some(i) = self.staged_index() {
            self.advance_staged(env, elb, i, next_ip, invocations, shifts);
            return;
        }

        let p_id = self.deployments[pi].id.clone();
        let desired = self.deployments[pi].desired;
        let percent = |key: &str, default: f64| {
            self.deployment_configuration[key]
                .as_f64()
                .unwrap_or(default)
        };
        // bc:ecs DeploymentConfiguration: maximumPercent rounds down, minimumHealthyPercent up.
        let max_total = (desired as f64 * percent("maximumPercent", 200.0) / 100.0).floor() as i64;
        let min_healthy =
            (desired as f64 * percent("minimumHealthyPercent", 100.0) / 100.0).ceil() as i64;
        let live = |t: &Task| !matches!(t.state, TaskState::Draining { .. });

        // Scaled in: stop the PRIMARY's newest extra tasks (pending ones first).
        let primary_live = self
            .tasks
            .iter()
            .filter(|t| t.deployment == p_id && live(t))
            .count() as i64;
        let mut extra = primary_live - desired;
        while extra > 0 {
            let pos = self
                .tasks
                .iter()
                .rposition(|t| t.deployment == p_id && matches!(t.state, TaskState::Pending { .. }))
                .or_else(|| {
                    self.tasks.iter().rposition(|t| {
                        t.deployment == p_id && matches!(t.state, TaskState::Running { .. })
                    })
                });
            let Some(pos) = pos else { break };
            self.stop(elb, pos, now);
            extra -= 1;
        }

        // Old tasks not yet running stop at once; running ones stop while the healthy tasks
        // stay at or above the minimum, unhealthy ones first.
        self.tasks
            .retain(|t| t.deployment == p_id || !matches!(t.state, TaskState::Pending { .. }));
        let healthy: Vec<bool> = self
            .tasks
            .iter()
            .map(|t| live(t) && self.health(env, elb, t).0)
            .collect();
        let mut healthy_total = healthy.iter().filter(|h| **h).count() as i64;
        let mut draining = 0;
        loop {
            let candidates: Vec<usize> = (0..self.tasks.len())
                .filter(|&k| {
                    self.tasks[k].deployment != p_id
                        && matches!(self.tasks[k].state, TaskState::Running { .. })
                })
                .collect();
            let pick = candidates
                .iter()
                .copied()
                .find(|&k| !self.health(env, elb, &self.tasks[k]).0)
                .or_else(|| {
                    candidates
                        .iter()
                        .copied()
                        .find(|_| healthy_total > min_healthy)
                });
            let Some(k) = pick else { break };
            if self.health(env, elb, &self.tasks[k]).0 {
                healthy_total -= 1;
            }
            if self.stop(elb, k, now) {
                draining += 1;
            }
        }
        if draining > 0 {
            let message = format!(
                "(service {}) has begun draining connections on {draining} tasks.",
                self.name
            );
            self.event(env, message);
        }

        // Launch what the PRIMARY still lacks, within maximumPercent.
        let new_live = self
            .tasks
            .iter()
            .filter(|t| t.deployment == p_id && live(t))
            .count() as i64;
        let want = desired - new_live;
        let room = max_total - self.tasks.len() as i64;
        let launch = want.min(room);
        if launch > 0 {
            let start = env
                .scenario
                .task_start(self.deployments[pi].images.iter().map(String::as_str));
            let mut started = Vec::new();
            for _ in 0..launch {
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
                    was_healthy: false,
                    target_group: None,
                });
            }
            let message = format!(
                "(service {}) has started {launch} tasks: {}.",
                self.name,
                started.join(" ")
            );
            self.event(env, message);
        } else if want > 0
            && room <= 0
            && healthy_total <= min_healthy
            && self.stuck_reported.as_deref() != Some(p_id.as_str())
            && !self
                .tasks
                .iter()
                .any(|t| matches!(t.state, TaskState::Draining { .. }))
        {
            // Doc archive service-event-messages.md.
            self.stuck_reported = Some(p_id.clone());
            let message = format!("service ({}) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.", self.name);
            self.event(env, message);
        }

        let healthy_new = self
            .tasks
            .iter()
            .filter(|t| t.deployment == p_id && live(t) && self.health(env, elb, t).0)
            .count() as i64;
        let others = self.tasks.iter().any(|t| t.deployment != p_id);
        let p = &self.deployments[pi];
        if p.rollout == Rollout::InProgress && healthy_new == p.desired && !others {
            // With deployment alarms, the bake time: the deployment stays IN_PROGRESS while
            // ECS goes on watching the alarms ("a period of time after a new service version
            // has scaled out and the old service version has scaled in … Amazon ECS computes
            // this time period based on the alarm configuration"): here the longest of the
            // alarms' evaluation windows, Period × EvaluationPeriods (how ECS computes it is
            // not documented).
            if user_started {
                if let Some((names, _)) = self.deployment_alarms() {
                    let bake = names
                        .iter()
                        .filter_map(|n| cloudwatch.evaluation_seconds(n))
                        .fold(0.0, f64::max);
                    let until = match &self.alarm_bake {
                        Some((d, until)) if *d == p_id => *until,
                        _ => {
                            self.alarm_bake = Some((p_id.clone(), now + bake));
                            now + bake
                        }
                    };
                    if now < until {
                        return;
                    }
                }
            }
            let p = &self.deployments[pi];
            let id = p.id.clone();
            let td = p.task_definition.clone();
            let reason = format!("ECS deployment {id} completed.");
            self.deployments.retain(|d| d.id == id);
            let p = &mut self.deployments[0];
            p.rollout = Rollout::Completed;
            p.reason = reason.clone();
            p.updated_at = now;
            self.last_completed = Some((id.clone(), td));
            if let Some(sd) = self.service_deployment_mut(&id) {
                let rolled_back = sd.rollback_deployment.as_deref() == Some(id.as_str());
                sd.status = if rolled_back {
                    "ROLLBACK_SUCCESSFUL"
                } else {
                    "SUCCESSFUL"
                };
                if !rolled_back {
                    for monitor in [&mut sd.alarms.0, &mut sd.circuit_breaker.0] {
                        if *monitor == "MONITORING" {
                            *monitor = "MONITORING_COMPLETE";
                        }
                    }
                }
                sd.finished_at = Some(now);
                sd.updated_at = now;
            }
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

    /// The circuit breaker (or a deployment alarm) fails the PRIMARY at index `pi`.
    fn fail(
        &mut self,
        env: &mut Env,
        pi: usize,
        rollback: bool,
        why: Failed,
        shifts: &mut Vec<(String, Vec<(String, u32)>)>,
    ) {
        // The circuit breaker's wording is ECS's (AWS-BEHAVIOUR.md §7); the alarm's follows
        // the service events ECS writes then ("deployment failed: alarm detected.", as
        // captured in aws/copilot-cli's test data; its rolloutStateReason is not documented).
        let (reason, what, by) = match &why {
            Failed::CircuitBreaker => (
                "ECS deployment circuit breaker: tasks failed to start.".to_owned(),
                "tasks failed to start",
                "ECS deployment circuit breaker",
            ),
            Failed::Alarms(_) => (
                "ECS deployment failed: alarm detected.".to_owned(),
                "alarm detected",
                "ECS deployment alarms",
            ),
            Failed::Stopped => (
                "Service deployment rolled back by StopServiceDeployment.".to_owned(),
                "stopped (rollback requested)",
                "StopServiceDeployment",
            ),
        };
        // A blue/green, linear or canary deployment goes back to blue, which still runs
        // (whatever `rollback` says: blue is there to take the traffic back).
        if let Some(i) = self.staged_index() {
            if let Some(sd) = self.service_deployments.get_mut(i) {
                match &why {
                    Failed::CircuitBreaker => sd.circuit_breaker.0 = "TRIGGERED",
                    Failed::Alarms(names) => {
                        sd.alarms.0 = "TRIGGERED";
                        sd.alarms.2 = names.clone();
                    }
                    Failed::Stopped => {}
                }
            }
            self.roll_back_staged(env, i, reason, shifts);
            return;
        }
        let failed_td = self.deployments[pi].task_definition.clone();
        self.failed_task_definitions.push(failed_td);
        let d = &mut self.deployments[pi];
        d.rollout = Rollout::Failed;
        d.reason = reason.clone();
        d.updated_at = env.now;
        let id = d.id.clone();
        self.state_change(env, "SERVICE_DEPLOYMENT_FAILED", &id, &reason);
        let message = format!(
            "(service {}) deployment {id} deployment failed: {what}.",
            self.name
        );
        self.event(env, message);
        let now = env.now;
        if let Some(sd) = self.service_deployment_mut(&id) {
            match &why {
                Failed::CircuitBreaker => sd.circuit_breaker.0 = "TRIGGERED",
                Failed::Alarms(names) => {
                    sd.alarms.0 = "TRIGGERED";
                    sd.alarms.2 = names.clone();
                }
                Failed::Stopped => {}
            }
            sd.status_reason = reason.clone();
            sd.updated_at = now;
            // Without rollback the service deployment stops ("The rollback option is not
            // in use for the failure detection mechanism … and the service fails",
            // bc:ecs ServiceDeployment.stoppedAt).
            sd.status = "STOPPED";
            sd.stopped_at = Some(now);
            sd.finished_at = Some(now);
        }
        // Its tasks that never became healthy go; healthy ones drain as the rollback runs.
        let (gone, kept): (Vec<Task>, Vec<Task>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| {
                t.deployment == id
                    && (!t.was_healthy || matches!(t.state, TaskState::Pending { .. }))
            });
        self.tasks = kept;
        for t in &gone {
            let why = format!("Scaling activity initiated by (deployment {id})");
            self.record_stop(t, env.now, "ServiceSchedulerInitiated", &why, Vec::new());
        }
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
                let reason = format!("{by}: rolling back to deploymentId {back_to}.");
                let message = format!(
                    "(service {}) rolling back to deployment {back_to}.",
                    self.name
                );
                self.event(env, message);
                self.start_deployment(env, td, images, Some(reason.clone()));
                let rollback_id = self.primary().map(|p| p.id.clone()).unwrap_or_default();
                let revision = self.revision_of(&rollback_id);
                if let Some(sd) = self.service_deployment_mut(&id) {
                    sd.status = "ROLLBACK_IN_PROGRESS";
                    sd.stopped_at = None;
                    sd.finished_at = None;
                    sd.rollback_deployment = Some(rollback_id);
                    sd.rollback = Some((reason, now, revision));
                }
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
                    .filter(|t| !matches!(t.state, TaskState::Pending { .. }))
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
            "currentServiceDeployment": self.service_deployments.last().map(|d| d.arn.clone()),
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
