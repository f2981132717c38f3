//! STUB: being written.
#![allow(missing_docs)]
#[derive(Debug)] pub struct Allocation;
#[derive(Debug)] pub struct AllocationRequest;
#[derive(Debug)] pub struct Grant;
#[derive(Debug)] pub struct HeavyUser;
#[derive(Debug)] pub struct LeakReason;
#[derive(Debug)] pub struct LedgerSnapshot;
#[derive(Debug)] pub struct ReclaimedAllocation;
#[derive(Debug)] pub struct ResourceLedger;
#[derive(Debug)] pub struct ResourceUsage;
#[derive(Debug)] pub struct UsageReport;
#[derive(Debug)] pub struct WaitingRequest;
