//! mugge-testkit: a private headless PipeWire test stack with the hardware mocked.
#![forbid(unsafe_code)]
