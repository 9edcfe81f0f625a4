//! The AMQP connector against a real RabbitMQ broker (127.0.0.1:5672,
//! guest/guest, or `SWITCHBOARD_TEST_AMQP_URL`): conversations both ways,
//! several server instances, killed processes, a cut broker connection,
//! wrong secrets, cleanup of queues, large bodies, and the connector string.
//!
//! Without a broker the tests that need one are not run, and say so: this
//! binary has its own `main` (`harness = false` in Cargo.toml) so that they
//! are listed as ignored, with the reason, and counted as ignored in the
//! summary line (tests/support/broker.rs). CI sets
//! `SWITCHBOARD_REQUIRE_BROKER=1`, which makes a missing broker a failure.
//!
//! Every test uses its own service name, so they run in parallel; the one
//! that cuts broker connections cuts only those of its own service (the
//! broker is shared with everything else on the machine).
//!
//! Not run on Windows: the tests drive `rabbitmqctl`, which runs on the
//! broker's host (under Wine, the connector itself works).

#[allow(dead_code)]
#[path = "../support/broker.rs"]
mod broker;

#[cfg(not(windows))]
mod common;
#[cfg(not(windows))]
mod connections;
#[cfg(not(windows))]
mod conversation;
#[cfg(not(windows))]
mod failures;
#[cfg(not(windows))]
mod instances;
#[cfg(not(windows))]
mod security;
#[cfg(not(windows))]
mod tools;

/// Async tests that need the broker, each on its own runtime.
#[cfg(not(windows))]
macro_rules! broker_async {
    ($($module:ident::$test:ident),* $(,)?) => {
        [$(broker::trial(concat!(stringify!($module), "::", stringify!($test)), || {
            broker::block_on($module::$test)
        })),*]
    };
}

#[cfg(not(windows))]
fn main() {
    if let Ok(role) = std::env::var(common::CHILD_ROLE) {
        return common::child_main(&role);
    }
    let mut tests = Vec::from(broker_async![
        conversation::requests_notifications_and_callbacks_both_ways,
        conversation::large_bodies_are_split_and_reassembled,
        conversation::streams_flow_over_the_broker_and_stop_when_dropped,
        instances::two_instances_share_the_clients_and_each_client_stays_with_one,
        instances::many_clients_in_flight_on_one_instance,
        instances::a_reconnecting_client_moves_to_a_live_instance_when_its_own_dies,
        failures::a_killed_server_instance_fails_pending_requests_within_seconds,
        failures::a_killed_client_process_fails_the_servers_request_and_leaves_no_queue,
        failures::clients_that_close_leave_nothing_behind,
        failures::cutting_the_broker_connections_fails_pending_requests_and_clients_come_back,
        failures::a_reconnecting_client_comes_back_after_its_broker_connection_is_cut,
        security::a_wrong_secret_is_refused,
        security::bytes_injected_by_someone_with_broker_access_end_the_connection,
        connections::connecting_waits_for_a_server_until_the_connect_timeout,
        connections::a_connection_outlives_the_runtime_of_an_earlier_attempt,
        connections::connections_outlive_the_presence_token_renewal,
        tools::the_cli_serves_and_calls_over_the_broker,
        tools::typed_services_work_over_the_broker,
    ]);
    tests.extend([
        broker::trial(
            "tools::the_parent_child_demo_runs_over_the_broker",
            tools::the_parent_child_demo_runs_over_the_broker,
        ),
        broker::trial(
            "tools::the_blocking_client_works_over_the_broker",
            tools::the_blocking_client_works_over_the_broker,
        ),
        // These need no broker: they always run.
        broker::offline(
            "security::the_connector_string_round_trips_and_hides_the_password",
            security::the_connector_string_round_trips_and_hides_the_password,
        ),
        broker::offline("security::connect_errors_do_not_show_the_password", || {
            broker::block_on(security::connect_errors_do_not_show_the_password)
        }),
        broker::offline(
            "tools::cli_inspect_redacts_the_broker_password",
            tools::cli_inspect_redacts_the_broker_password,
        ),
    ]);
    broker::run(tests)
}

#[cfg(windows)]
fn main() {
    broker::run(Vec::new())
}
