//! IC simulator.
