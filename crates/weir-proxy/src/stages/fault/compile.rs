//! Compiling a fault as written (in the file, or in an experiment) into what the stage runs.

use weir_config::fault::{Delay as DelayConfig, Fault as FaultConfig};
use weir_telemetry::FaultCounters;

use super::{Abort, Action, Delay, Fault, When};
use crate::router::Conditions;
use crate::snapshot::value_test;

/// Compiles a validated fault; its injections count into `counters`.
pub fn compile_fault(fault: &FaultConfig, counters: FaultCounters) -> Fault {
    Fault {
        action: action(fault),
        per_million: fault.percent.per_million(),
        when: (!fault.when.is_empty()).then(|| when(fault)),
        endpoint: fault.endpoint.as_deref().and_then(|e| e.parse().ok()),
        counters,
    }
}

fn action(fault: &FaultConfig) -> Action {
    if let Some(delay) = fault.delay {
        return Action::Delay(match delay {
            DelayConfig::Fixed(delay) => Delay::Fixed(delay),
            DelayConfig::Uniform { min, max } => Delay::Uniform { min, max },
        });
    }
    if let Some(throttle) = &fault.throttle {
        return Action::Throttle(throttle.bytes_per_second.0);
    }
    match &fault.abort {
        Some(abort) if abort.reset => Action::Abort(Abort::Reset),
        Some(abort) => {
            Action::Abort(Abort::Status { http: abort.status.map(|s| s.0), grpc: abort.grpc_status.map(|code| code.0) })
        }
        // Validation guarantees one kind.
        None => unreachable!("a validated fault has a kind"),
    }
}

fn when(fault: &FaultConfig) -> When {
    let when = &fault.when;
    let headers = when.headers.iter().map(|h| (h.name.0.clone(), value_test(h)));
    When {
        conditions: Conditions {
            methods: when.method.iter().map(|m| m.0.clone()).collect(),
            headers: headers.collect(),
            query: Vec::new(),
            client_spiffe_id: None,
            grpc: false,
        },
        path_prefix: when.path_prefix.as_ref().map(|p| p.0.as_str().into()),
        clients: when.client.clone(),
    }
}
