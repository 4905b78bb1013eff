//! The state table (DynamoDB): the configuration, one lock item per service, one record per
//! deployment. Keys: `pk` (partition) and `sk` (sort), both strings.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | configuration | `CONFIG` | `CURRENT` (attribute `toml`) |
//! | lock of a service | `LOCK#<service>` | `LOCK` (`owner`, `release`, `digest`, `expires_at`) |
//! | deployment record | `DEPLOYMENTS` | `<started_at, 10 digits>#<release>` (attribute `record`, JSON) |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::aws::{aws, Clients};
use crate::config::Config;
use crate::model::DeploymentRecord;
use crate::StepError;

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
        .item("pk", s("CONFIG"))
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
        .key("pk", s("CONFIG"))
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
    Config::parse(
        text,
        &format!("slipway.toml (state table {})", clients.table),
    )
    .map_err(|e| StepError::invalid("config", e.to_string()))
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
    /// When the lock expires, epoch seconds.
    pub expires_at: i64,
}

/// Takes `service`'s lock for `owner` unless another live owner holds it. Taking a lock one
/// already holds renews it (Lambda may run a step twice).
pub async fn acquire_lock(
    clients: &Clients,
    service: &str,
    owner: &str,
    release: &str,
    digest: &str,
    now: i64,
    ttl_seconds: i64,
) -> Result<Result<(), LockHolder>, StepError> {
    let result = clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s(format!("LOCK#{service}")))
        .item("sk", s("LOCK"))
        .item("owner", s(owner))
        .item("release", s(release))
        .item("digest", s(digest))
        .item(
            "expires_at",
            AttributeValue::N((now + ttl_seconds).to_string()),
        )
        .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR #owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":owner", s(owner))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"));
    match result {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.code == "ConditionalCheckFailedException" => {
            match lock_holder(clients, service).await? {
                Some(holder) => Ok(Err(holder)),
                // Released between the two calls: try again once.
                None => {
                    Box::pin(acquire_lock(
                        clients,
                        service,
                        owner,
                        release,
                        digest,
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
        .key("pk", s(format!("LOCK#{service}")))
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
        expires_at: item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }))
}

/// Releases `service`'s lock if `owner` holds it (idempotent).
pub async fn release_lock(clients: &Clients, service: &str, owner: &str) -> Result<(), StepError> {
    let result = clients
        .dynamodb
        .delete_item()
        .table_name(&clients.table)
        .key("pk", s(format!("LOCK#{service}")))
        .key("sk", s("LOCK"))
        .condition_expression("#owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":owner", s(owner))
        .send()
        .await
        .map_err(aws("dynamodb:DeleteItem"));
    match result {
        Ok(_) => Ok(()),
        // Not ours (expired and taken by another execution) or already gone: nothing to release.
        Err(e) if e.code == "ConditionalCheckFailedException" => Ok(()),
        Err(e) => Err(e.step(StepError::Transient)),
    }
}

/// Writes a deployment record (overwriting the same release's, so finish is idempotent).
pub async fn put_record(clients: &Clients, record: &DeploymentRecord) -> Result<(), StepError> {
    let json = serde_json::to_string(record).map_err(|e| StepError::Transient(e.to_string()))?;
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("pk", s("DEPLOYMENTS"))
        .item(
            "sk",
            s(format!("{:010}#{}", record.started_at, record.release)),
        )
        .item("record", s(json))
        .item("result", s(&record.result))
        .send()
        .await
        .map_err(aws("dynamodb:PutItem"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(())
}

/// The most recent deployment records, newest first.
pub async fn records(clients: &Clients, limit: i32) -> Result<Vec<DeploymentRecord>, StepError> {
    let out = clients
        .dynamodb
        .query()
        .table_name(&clients.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("DEPLOYMENTS"))
        .scan_index_forward(false)
        .limit(limit)
        .send()
        .await
        .map_err(aws("dynamodb:Query"))
        .map_err(|e| e.step(StepError::Transient))?;
    Ok(out
        .items()
        .iter()
        .filter_map(|item| get_s(item, "record"))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}
