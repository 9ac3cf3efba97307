//! End-to-end tests of the `medledger` binary: real node processes on temporary data
//! directories and loopback ports, driven through the CLI, raw HTTP and the client SDK.

mod amend;
mod attacks;
mod bench;
mod cases;
mod checkpoints;
mod cluster;
mod cluster_harness;
mod cluster_up;
mod consent;
mod crash;
mod devices;
mod diskfull;
mod emergency;
mod events;
mod faults;
mod fork;
mod hardening;
mod harness;
mod http_refusals;
mod join;
mod json;
mod nodes;
mod operators;
mod patient_view;
mod records;
mod registry;
mod replicas;
mod signed_reads;
mod simulate;
mod startup;
mod tamper;
mod tls;
mod verify;
mod wallet_trust;
