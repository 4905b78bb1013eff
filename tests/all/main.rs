//! Slipway's tests against the local test bed (moto, slipway-sim, cargo lambda watch,
//! aws-local-stepfunctions), all over real HTTP. Run through the README's test command.
#![allow(clippy::unwrap_used, missing_docs)]

use slipway_tests::app;
mod bad_inputs;
mod bootstrap;
mod examples;
mod lambda;
mod moto;
mod scenarios;
mod sim_cloudformation;
mod sim_cloudwatch;
mod sim_ecs;
mod sim_elb;
mod sim_fidelity;
mod sim_strategies;
mod stepfunctions;
mod steps;
