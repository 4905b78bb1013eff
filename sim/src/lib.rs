//! slipway-sim: a local AWS control plane for what decides a deployment over time — ECS
//! deployments and their circuit breaker, CloudFormation updates and rollbacks, ELBv2 target
//! health and the apps' own `/health` — over the real wire protocols, so the unmodified AWS
//! SDKs and awscli work against it.
//!
//! One port serves everything:
//! - `POST /` with `X-Amz-Target: AmazonEC2ContainerServiceV20141113.*`: ECS (JSON 1.1);
//! - `POST /service/GraniteServiceVersion20100801/operation/{op}` (Smithy RPC v2 CBOR) or
//!   `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.*` (JSON 1.0): CloudWatch's
//!   alarms;
//! - `POST /` with a form body `Action=…&Version=2010-05-15`: CloudFormation (Query),
//!   `Version=2015-12-01`: ELBv2 (Query);
//! - any other `GET`: the app behind the load balancer, routed as an ALB routes it — by a
//!   listener rule's host-header condition, or the default action of the listener of the load
//!   balancer whose DNS name is the `Host` — to its target group's healthy targets in turn
//!   (all of them when none is healthy, 503 when it has none); the answer depends on the
//!   image the task runs and the path (see [`scenario::Scenario::answer`]);
//! - `/_sim/…`: the simulator's own control endpoints (health, clock, scenario, events).

pub mod cbor;
pub mod cfn;
pub mod cloudwatch;
pub mod ecs;
pub mod elb;
pub mod env;
pub mod ids;
pub mod scenario;
pub mod server;
pub mod sfn;
pub mod taskdef;
pub mod template;
pub mod wire;
