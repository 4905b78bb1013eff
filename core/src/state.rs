//! The state table (DynamoDB): the configuration, one lock item per service, one record per
//! deployment. Keys: `pk` (partition) and `sk` (sort), both strings.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | configuration | `CONFIG` | `CURRENT` (attribute `toml`) |
//! | lock of a service | `LOCK#<service>` | `LOCK` (`owner`, `release`, `digest`, `pushed_at` (epoch ms, when ECR received the image), `expires_at`) |
//! | lock of a stack | `LOCK#stack:<stack>` | `LOCK` (the same attributes) |
//! | the newest image waiting for a service's lock | `WAIT#<service>` | `WAIT` (`owner`, `digest`, `pushed_at`, `expires_at`) |
//! | deployment record | `DEPLOYMENTS` | `<started_at, 10 digits>#<release>` (attribute `record`, JSON) |
//! | release of a running execution | `RELEASE#<execution ARN>` | `RELEASE` (attribute `release`, JSON; deleted by finish) |
//! | a stability wait's task token | `WAKE#ecs#<service ARN>#<deployment id>` | `WAKE` (`token`, `input` (check-stability's, JSON), `group` (every key of the wait), `expires_at`) |
//! | a stack update's wait | `WAKE#stack#<stack id>` | `WAKE` (`token`, `input`: the stack loop's progress to answer with, `group`, `expires_at`) |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::aws::{aws, Clients};
use crate::config::Config;
use crate::model::{DeploymentRecord, Release};
use crate::StepError;

/// Partition key of the configuration (written only by `slipway bootstrap`).
pub const CONFIG_KEY: &str = "CONFIG";
/// Partition key prefix of a lock (`LOCK#<service>`, `LOCK#stack:<stack>`).
pub const LOCK_KEY: &str = "LOCK#";
/// Partition key prefix of a service's queue place (`WAIT#<service>`).
pub const WAIT_KEY: &str = "WAIT#";
/// Partition key prefix of a running execution's release (`RELEASE#<execution ARN>`).
pub const RELEASE_KEY: &str = "RELEASE#";
/// Partition key of the deployment records.
pub const RECORDS_KEY: &str = "DEPLOYMENTS";
/// Partition key prefix of a rollout wait's task token
/// (`WAKE#ecs#<service ARN>#<ECS deployment id>`).
pub const WAKE_ECS_KEY: &str = "WAKE#ecs#";
/// Partition key prefix of a stack update's wait (`WAKE#stack#<stack id>`).
pub const WAKE_STACK_KEY: &str = "WAKE#stack#";

/// Which partition keys a step reads, writes and deletes (a prefix ends in `#`): the
/// template grants each step's role exactly these, through `dynamodb:LeadingKeys`.
#[derive(Debug, Clone, Copy)]
pub struct TableAccess {
    /// GetItem.
    pub get: &'static [&'static str],
    /// PutItem.
    pub put: &'static [&'static str],
    /// DeleteItem.
    pub delete: &'static [&'static str],
}

/// plan: reads the configuration; takes locks and queue places (and gives them back when it
/// fails), stores the release, records a recovered execution.
pub const PLAN_ACCESS: TableAccess = TableAccess {
    get: &[CONFIG_KEY, LOCK_KEY, WAIT_KEY, RELEASE_KEY, RECORDS_KEY],
    put: &[LOCK_KEY, WAIT_KEY, RELEASE_KEY, RECORDS_KEY],
    delete: &[LOCK_KEY, WAIT_KEY],
};

/// check-stability: stores a stability wait's task token under each service deployment it
/// waits for, reads it back when ECS's event comes, deletes it once the wait is answered.
pub const CHECK_STABILITY_ACCESS: TableAccess = TableAccess {
    get: &[WAKE_ECS_KEY],
    put: &[WAKE_ECS_KEY],
    delete: &[WAKE_ECS_KEY],
};

/// deploy-stack: the same for a stack update's wait.
pub const DEPLOY_STACK_ACCESS: TableAccess = TableAccess {
    get: &[WAKE_STACK_KEY],
    put: &[WAKE_STACK_KEY],
    delete: &[WAKE_STACK_KEY],
};

/// finish: reads the configuration; records the release, gives back its locks and queue
/// places, deletes the stored release.
pub const FINISH_ACCESS: TableAccess = TableAccess {
    get: &[CONFIG_KEY, LOCK_KEY, RECORDS_KEY],
    put: &[RECORDS_KEY],
    delete: &[LOCK_KEY, WAIT_KEY, RELEASE_KEY],
};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Creates the state table (what `slipway bootstrap` does through CloudFormation; tests and
/// the local test bed call it directly).
pub async fn create_table(clients: &Clients) -> Result<(), StepError> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let result = clients
        .dynamodb
        .create_table()
        .table_name(&clients.table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk").map_err(|e| StepError::Transient(e.to_string()))?)
        .attribute_definitions(attr("sk").map_err(|e| StepError::Transient(e.to_string()))?)
        .key_schema(key("pk", KeyType::Hash).map_err(|e| StepError::Transient(e.to_string()))?)
        .key_schema(key("sk", KeyType::Range).map_err(|e| StepError::Transient(e.to_string()))?)
        .send()
        .await;
    match result.map_err(aws("dynamodb:CreateTable")) {
        Ok(_) => Ok(()),
        Err(e) if e.code == "ResourceInUseException" => Ok(()),
        Err(e) => Err(e.step(StepError::Transient)),
    }
}

/// Stores the configuration text (validated first).
pub async fn store_config(clients: &Clients, text: &str) -> Result<Config, StepError> {
    let config = Config::parse(text, "slipway.toml")
        .map_err(|e| StepError::invalid("config", e.to_string()))?;
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(CONFIG_KEY))
        .item("sk", s("CURRENT"))
        .item("toml", s(text))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(config)
}

/// Loads the configuration `slipway bootstrap` stored.
pub async fn load_config(clients: &Clients) -> Result<Config, StepError> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", s(CONFIG_KEY))
        .key("sk", s("CURRENT"))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| {
            let table = clients.table.clone();
            e.step(move |m| {
                StepError::invalid(
                    "config",
                    format!("cannot read the state table {table}: {m}"),
                )
            })
        })?;
    let item = out.item().ok_or_else(|| {
        StepError::invalid(
            "config",
            format!("no configuration in the state table {}: run `slipway bootstrap --config slipway.toml`", clients.table),
        )
    })?;
    let text = get_s(item, "toml").unwrap_or_default();
    let mut config = Config::parse(
        text,
        &format!("slipway.toml (state table {})", clients.table),
    )
    .map_err(|e| StepError::invalid("config", e.to_string()))?;
    config
        .notifications
        .use_created_topic(std::env::var(crate::aws::TOPIC_ENV).ok().as_deref());
    Ok(config)
}

/// Lock names of stacks start with this (service names cannot contain `:`).
pub const STACK_LOCK_PREFIX: &str = "stack:";

/// The lock name of stack `name`: `stack:<name>` (item `LOCK#stack:<name>`).
pub fn stack_lock(name: &str) -> String {
    format!("{STACK_LOCK_PREFIX}{name}")
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The execution.
    pub owner: String,
    /// Its release.
    pub release: String,
    /// The digest it deploys.
    pub digest: String,
    /// When ECR received that image (epoch milliseconds), if known.
    pub pushed_at: Option<i64>,
    /// When the lock expires, epoch seconds.
    pub expires_at: i64,
}

/// What a lock (or a place in the queue for one) is taken for.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The execution.
    pub owner: &'a str,
    /// Its release.
    pub release: &'a str,
    /// The digest it deploys.
    pub digest: &'a str,
    /// When ECR received that image (epoch milliseconds), if known: a later push wins.
    pub pushed_at: Option<i64>,
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(item: &HashMap<String, AttributeValue>, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Takes `service`'s lock for `claim.owner` unless another live owner holds it. Taking a
/// lock one already holds renews it (Lambda may run a step twice).
pub async fn acquire_lock(
    clients: &Clients,
    service: &str,
    claim: &Claim<'_>,
    now: i64,
    ttl_seconds: i64,
) -> Result<Result<(), LockHolder>, StepError> {
    let mut put = clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(format!("{LOCK_KEY}{service}")))
        .item("sk", s("LOCK"))
        .item("owner", s(claim.owner))
        .item("release", s(claim.release))
        .item("digest", s(claim.digest))
        .item("expires_at", n(now + ttl_seconds));
    if let Some(at) = claim.pushed_at {
        put = put.item("pushed_at", n(at));
    }
    let result = put
        .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR #owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":owner", s(claim.owner))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"));
    match result {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.code == "ConditionalCheckFailedException" => {
            match lock_holder(clients, service).await? {
                Some(holder) => Ok(Err(holder)),
                // Released between the two calls: try again once.
                None => Box::pin(acquire_lock(clients, service, claim, now, ttl_seconds)).await,
            }
        }
        Err(e) => Err(e.step(StepError::Transient)),
    }
}

/// How long a place in the queue for a lock lasts unless its execution renews it. A waiting
/// execution asks again every 30 s (the state machine's `WaitForLock`); twenty missed turns
/// mean it is gone and its image no longer counts. An execution that fails or is stopped
/// gives its places up sooner: [`release_locks_of`] (plan's failure, and recovery) does.
pub const WAITER_TTL_SECONDS: i64 = 600;

/// The newest image waiting for a service's lock (item `WAIT#<service>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// The waiting execution.
    pub owner: String,
    /// The digest it would deploy.
    pub digest: String,
    /// When ECR received that image, epoch milliseconds.
    pub pushed_at: i64,
    /// When the place lapses unless renewed, epoch seconds.
    pub expires_at: i64,
}

/// Puts `claim` in the queue for `service`'s lock if its image is the newest waiting (or it
/// already holds the place, or the place lapsed). Returns the waiter that holds the place
/// afterwards. A claim without a push time never queues.
pub async fn wait_for_lock(
    clients: &Clients,
    service: &str,
    claim: &Claim<'_>,
    now: i64,
) -> Result<Option<Waiter>, StepError> {
    let Some(pushed_at) = claim.pushed_at else {
        return waiter(clients, service).await;
    };
    let result = clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(format!("{WAIT_KEY}{service}")))
        .item("sk", s("WAIT"))
        .item("owner", s(claim.owner))
        .item("digest", s(claim.digest))
        .item("pushed_at", n(pushed_at))
        .item("expires_at", n(now + WAITER_TTL_SECONDS))
        .condition_expression(
            "attribute_not_exists(pk) OR pushed_at < :pushed OR expires_at < :now OR #owner = :owner",
        )
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":pushed", n(pushed_at))
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":owner", s(claim.owner))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"));
    if let Err(e) = result {
        // A newer image holds the place: fine, the waiter read below says which.
        if e.code != "ConditionalCheckFailedException" {
            return Err(e.step(StepError::Transient));
        }
    }
    waiter(clients, service).await
}

/// The newest image waiting for `service`'s lock, lapsed or not.
pub async fn waiter(clients: &Clients, service: &str) -> Result<Option<Waiter>, StepError> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", s(format!("{WAIT_KEY}{service}")))
        .key("sk", s("WAIT"))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(out.item().map(|item| Waiter {
        owner: get_s(item, "owner").unwrap_or_default().to_owned(),
        digest: get_s(item, "digest").unwrap_or_default().to_owned(),
        pushed_at: get_n(item, "pushed_at").unwrap_or(0),
        expires_at: get_n(item, "expires_at").unwrap_or(0),
    }))
}

/// Gives up `owner`'s place in the queue for `service`'s lock (idempotent; another
/// waiter's place is left alone); says whether `owner` had one.
pub async fn stop_waiting(
    clients: &Clients,
    service: &str,
    owner: &str,
) -> Result<bool, StepError> {
    delete_if_owner(clients, format!("{WAIT_KEY}{service}"), "WAIT", owner).await
}

/// Deletes item `pk`/`sk` if `owner` owns it (idempotent: an item another owner holds, or
/// none, is left as it is); says whether it deleted one.
async fn delete_if_owner(
    clients: &Clients,
    pk: String,
    sk: &str,
    owner: &str,
) -> Result<bool, StepError> {
    let result = clients
        .dynamodb
        .delete_item()
        .table_name(&clients.table)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .condition_expression("#owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":owner", s(owner))
        .send()
        .await
        .map_err(aws("dynamodb:DeleteItem"));
    match result {
        Ok(_) => Ok(true),
        // Not ours (expired and taken by another execution) or already gone: nothing to do.
        Err(e) if e.code == "ConditionalCheckFailedException" => Ok(false),
        Err(e) => Err(e.step(StepError::Transient)),
    }
}

/// Takes lock `name` over from execution `from` for execution `to` (a recovery taking over
/// the release of an execution that was stopped): succeeds when `from` or `to` holds it,
/// when it expired, or when it is gone; otherwise names the live holder.
pub async fn take_over_lock(
    clients: &Clients,
    name: &str,
    from: &str,
    to: &str,
    release: &str,
    now: i64,
    ttl_seconds: i64,
) -> Result<Result<(), LockHolder>, StepError> {
    let before = lock_holder(clients, name).await?;
    let mut put = clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(format!("{LOCK_KEY}{name}")))
        .item("sk", s("LOCK"))
        .item("owner", s(to))
        .item("release", s(release))
        .item(
            "digest",
            s(before
                .as_ref()
                .map(|h| h.digest.clone())
                .unwrap_or_default()),
        )
        .item("expires_at", n(now + ttl_seconds));
    if let Some(at) = before.and_then(|h| h.pushed_at) {
        put = put.item("pushed_at", n(at));
    }
    let result = put
        .condition_expression(
            "attribute_not_exists(pk) OR expires_at < :now OR #owner = :from OR #owner = :to",
        )
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":from", s(from))
        .expression_attribute_values(":to", s(to))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"));
    match result {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.code == "ConditionalCheckFailedException" => {
            match lock_holder(clients, name).await? {
                Some(holder) => Ok(Err(holder)),
                None => {
                    Box::pin(take_over_lock(
                        clients,
                        name,
                        from,
                        to,
                        release,
                        now,
                        ttl_seconds,
                    ))
                    .await
                }
            }
        }
        Err(e) => Err(e.step(StepError::Transient)),
    }
}

/// The current holder of `service`'s lock, expired or not.
pub async fn lock_holder(
    clients: &Clients,
    service: &str,
) -> Result<Option<LockHolder>, StepError> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", s(format!("{LOCK_KEY}{service}")))
        .key("sk", s("LOCK"))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(out.item().map(|item| LockHolder {
        owner: get_s(item, "owner").unwrap_or_default().to_owned(),
        release: get_s(item, "release").unwrap_or_default().to_owned(),
        digest: get_s(item, "digest").unwrap_or_default().to_owned(),
        pushed_at: get_n(item, "pushed_at"),
        expires_at: get_n(item, "expires_at").unwrap_or(0),
    }))
}

/// A stability wait, stored under each service deployment it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// The `.waitForTaskToken` task's token.
    pub token: String,
    /// check-stability's input for the wait (without the token), as JSON.
    pub input: String,
    /// The partition keys of every service deployment of the wait.
    pub group: Vec<String>,
}

/// The partition key of the wait for a service deployment.
pub fn wake_key(service_arn: &str, deployment_id: &str) -> String {
    format!("{WAKE_ECS_KEY}{service_arn}#{deployment_id}")
}

/// The partition key of the wait for a stack's update (one release updates a stack at a
/// time: its lock).
pub fn stack_wake_key(stack_id: &str) -> String {
    format!("{WAKE_STACK_KEY}{stack_id}")
}

/// Stores `wake` under every key of its group (a later wait of the same deployment replaces
/// an earlier one, whose task is closed by then).
pub async fn put_wake(clients: &Clients, wake: &Wake, expires_at: i64) -> Result<(), StepError> {
    for key in &wake.group {
        clients
            .dynamodb
            .put_item()
            .table_name(&clients.table)
            .item("pk", s(key.clone()))
            .item("sk", s("WAKE"))
            .item("token", s(wake.token.clone()))
            .item("input", s(wake.input.clone()))
            .item(
                "group",
                AttributeValue::L(wake.group.iter().map(|k| s(k.clone())).collect()),
            )
            .item("expires_at", n(expires_at))
            .send()
            .await
            .map_err(aws("dynamodb:PutItem"))
            .map_err(|e| e.step(StepError::Transient))?;
    }
    Ok(())
}

/// The wait stored for a service deployment, if any.
pub async fn wake(clients: &Clients, key: &str) -> Result<Option<Wake>, StepError> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", s(key))
        .key("sk", s("WAKE"))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    let Some(item) = out.item() else {
        return Ok(None);
    };
    Ok(Some(Wake {
        token: get_s(item, "token").unwrap_or_default().to_owned(),
        input: get_s(item, "input").unwrap_or_default().to_owned(),
        group: item
            .get("group")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
    }))
}

/// Deletes the items of the wait whose token is `token` (idempotent). An item a later wait
/// has taken over (another token) is left alone.
pub async fn delete_wake(clients: &Clients, keys: &[String], token: &str) -> Result<(), StepError> {
    for key in keys {
        let deleted = clients
            .dynamodb
            .delete_item()
            .table_name(&clients.table)
            .key("pk", s(key.clone()))
            .key("sk", s("WAKE"))
            .condition_expression("attribute_not_exists(pk) OR #token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token))
            .send()
            .await
            .map_err(aws("dynamodb:DeleteItem"));
        match deleted {
            Ok(_) => {}
            Err(e) if e.code == "ConditionalCheckFailedException" => {}
            Err(e) => return Err(e.step(StepError::Transient)),
        }
    }
    Ok(())
}

/// Releases `service`'s lock if `owner` holds it (idempotent).
pub async fn release_lock(clients: &Clients, service: &str, owner: &str) -> Result<(), StepError> {
    delete_if_owner(clients, format!("{LOCK_KEY}{service}"), "LOCK", owner)
        .await
        .map(|_| ())
}

/// What an execution that ended without its release held, and gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// The locks (services, and `stack:<name>`) it held.
    pub locks: Vec<String>,
    /// The services whose queue it was waiting in.
    pub queued_for: Vec<String>,
}

impl Held {
    /// Nothing at all: it never got as far as a lock or a queue (or gave them back itself).
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.queued_for.is_empty()
    }
}

/// The locks of the configuration's services and stacks that `owner` holds, and the services
/// in whose queue it has a place (read only).
pub async fn held_by(clients: &Clients, config: &Config, owner: &str) -> Result<Held, StepError> {
    let mut held = Held::default();
    for service in &config.services {
        if waiter(clients, &service.name)
            .await?
            .is_some_and(|w| w.owner == owner)
        {
            held.queued_for.push(service.name.clone());
        }
    }
    for name in lock_names(config) {
        if lock_holder(clients, &name)
            .await?
            .is_some_and(|h| h.owner == owner)
        {
            held.locks.push(name);
        }
    }
    Ok(held)
}

/// Every lock a configuration has: one per service, one per stack.
fn lock_names(config: &Config) -> impl Iterator<Item = String> + '_ {
    config
        .services
        .iter()
        .map(|s| s.name.clone())
        .chain(config.stacks.iter().map(|st| stack_lock(&st.name)))
}

/// Releases every lock of the configuration's services and stacks that `owner` holds, and
/// gives up its places in the services' queues, naming both (for an execution that ended
/// without its release: plan failed or was stopped).
pub async fn release_locks_of(
    clients: &Clients,
    config: &Config,
    owner: &str,
) -> Result<Held, StepError> {
    let mut held = Held::default();
    for service in &config.services {
        if stop_waiting(clients, &service.name, owner).await? {
            held.queued_for.push(service.name.clone());
        }
    }
    for name in lock_names(config) {
        if lock_holder(clients, &name)
            .await?
            .is_some_and(|h| h.owner == owner)
        {
            release_lock(clients, &name, owner).await?;
            held.locks.push(name);
        }
    }
    Ok(held)
}

/// Writes a deployment record (overwriting the same release's, so finish is idempotent).
pub async fn put_record(clients: &Clients, record: &DeploymentRecord) -> Result<(), StepError> {
    let json = serde_json::to_string(record).map_err(|e| StepError::Transient(e.to_string()))?;
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(RECORDS_KEY))
        .item(
            "sk",
            s(format!("{:010}#{}", record.started_at, record.release)),
        )
        .item("record", s(json))
        .item("result", s(record.result.as_str()))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(())
}

/// The most recent deployment records, newest first (those that cannot be read left out:
/// [`records_and_problems`] reports them).
pub async fn records(clients: &Clients, limit: i32) -> Result<Vec<DeploymentRecord>, StepError> {
    Ok(records_and_problems(clients, limit).await?.0)
}

/// The most recent deployment records, newest first, and for each item among them that
/// cannot be read as a record: its sort key and why.
pub async fn records_and_problems(
    clients: &Clients,
    limit: i32,
) -> Result<(Vec<DeploymentRecord>, Vec<String>), StepError> {
    records_where(clients, limit, |_| true).await
}

/// The most recent `limit` deployment records that `keep` accepts, newest first (paging
/// through the older ones as far as needed), and the items met on the way that cannot be read
/// as records.
pub async fn records_where(
    clients: &Clients,
    limit: i32,
    keep: impl Fn(&DeploymentRecord) -> bool,
) -> Result<(Vec<DeploymentRecord>, Vec<String>), StepError> {
    let want = usize::try_from(limit).unwrap_or(0);
    let (mut records, mut problems) = (Vec::new(), Vec::new());
    let mut start = None;
    while records.len() < want {
        let out = clients
            .dynamodb
            .query()
            .table_name(&clients.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(RECORDS_KEY))
            .scan_index_forward(false)
            .limit(limit.max(25))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(aws("dynamodb:Query"))
            .map_err(|e| e.step(StepError::Transient))?;
        for item in out.items() {
            // Past the records asked for, nothing more is read (or reported).
            if records.len() == want {
                break;
            }
            let key = get_s(item, "sk").unwrap_or("?");
            match get_s(item, "record").map(serde_json::from_str::<DeploymentRecord>) {
                Some(Ok(r)) if keep(&r) => records.push(r),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    problems.push(format!("record {key}: not a deployment record: {e}"));
                }
                None => problems.push(format!("record {key}: no `record` attribute")),
            }
        }
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    Ok((records, problems))
}

/// The key of the release an execution stored: `RELEASE#<execution ARN>` / `RELEASE`.
fn release_key(execution: &str) -> (AttributeValue, AttributeValue) {
    (s(format!("{RELEASE_KEY}{execution}")), s("RELEASE"))
}

/// Stores the release `execution` deploys, so that a recovery run (the execution stopped or
/// timed out) needs nothing but the execution's ARN. Finish deletes it once the record is
/// written.
pub async fn put_release(
    clients: &Clients,
    execution: &str,
    release: &Release,
) -> Result<(), StepError> {
    let json = serde_json::to_string(release).map_err(|e| StepError::Transient(e.to_string()))?;
    let (pk, sk) = release_key(execution);
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", pk)
        .item("sk", sk)
        .item("release", s(json))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(())
}

/// The release `execution` stored, if it stored one and has not finished. A stored release
/// that cannot be read is an error that names the item, never "nothing stored".
pub async fn get_release(clients: &Clients, execution: &str) -> Result<Option<Release>, StepError> {
    let (pk, sk) = release_key(execution);
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", pk)
        .key("sk", sk)
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    let Some(item) = out.item() else {
        return Ok(None);
    };
    let json = get_s(item, "release").unwrap_or_default();
    serde_json::from_str(json).map(Some).map_err(|e| {
        StepError::invalid(
            "detail.executionArn",
            format!(
                "the release stored for {execution} in the state table {} cannot be read: {e}",
                clients.table
            ),
        )
    })
}

/// Deletes the release `execution` stored (idempotent).
pub async fn delete_release(clients: &Clients, execution: &str) -> Result<(), StepError> {
    let (pk, sk) = release_key(execution);
    clients
        .dynamodb
        .delete_item()
        .table_name(&clients.table)
        .key("pk", pk)
        .key("sk", sk)
        .send()
        .await
        .map_err(aws("dynamodb:DeleteItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(())
}

/// The record of `release` (started at `started_at`), if finish wrote one.
pub async fn record_of(
    clients: &Clients,
    started_at: i64,
    release: &str,
) -> Result<Option<DeploymentRecord>, StepError> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(&clients.table)
        .key("pk", s(RECORDS_KEY))
        .key("sk", s(format!("{started_at:010}#{release}")))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("dynamodb:GetItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(out
        .item()
        .and_then(|item| get_s(item, "record"))
        .and_then(|json| serde_json::from_str(json).ok()))
}
