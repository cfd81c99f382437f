//! Store conformance, the whole suite on a Redis Cluster (each case on both backends
//! unless it names one).

use super::{audit::*, campaigns::*, contacts::*, inbox::*, keys::*, lanes::*, ops::*, outbox::*};

/// The whole conformance suite on a real 3-master Redis Cluster (issue 7,
/// point 4): every script and transaction keeps to one slot, pipelines
/// that span slots are split by node, and the data-key walk visits every
/// node. Each case gets its own key prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        appends_in_order_and_skips_seen_keys,
        queues_are_separate,
        contacts_with_events_are_ready_and_system_queues_are_not,
        concurrent_appends_of_one_key_store_one_entry,
        a_claim_is_exclusive_and_a_commit_is_all_or_nothing,
        an_expired_lease_cannot_commit,
        a_message_arriving_during_a_claim_keeps_the_contact_ready,
        the_outbox_lane_sends_in_order_and_empties,
        timers_fire_when_due_and_can_be_cancelled,
        delivery_records_only_move_forward,
        a_deferred_outbox_keeps_its_head_state_and_wakes_when_due,
        a_dead_letter_leaves_the_outbox_and_is_listed,
        a_job_is_finished_even_when_the_lease_was_lost,
        a_finish_can_remove_earlier_jobs_and_release_the_claim,
        rate_limits_and_breakers_are_shared,
        console_sessions_are_kept_until_they_expire_or_end,
        the_consent_ledger_keeps_every_change_in_order,
        a_consent_that_changes_nothing_is_not_recorded,
        only_the_holder_renews_a_lease,
        a_profile_outlives_the_session_and_expires_after_its_time,
        the_audit_log_appends_only_after_its_head,
        the_audit_log_pages_newest_first_and_indexes_open_requests,
        old_message_history_is_purged,
        recent_history_is_the_newest_entries_in_order,
        entries_are_stored_only_under_the_contact_s_data_key,
        nothing_is_written_under_an_erased_contact_s_key,
        a_claim_from_before_a_rewrap_still_writes,
        a_job_appended_to_an_outbox_is_ready_for_the_senders,
        a_campaign_queues_each_contact_once,
        campaigns_are_listed_oldest_first,
        skips_are_counted_by_reason,
        a_key_mismatch_keeps_the_audience,
        delivery_records_count_a_campaign_s_progress_once,
        a_campaign_job_that_ends_unsent_counts_why,
        an_opt_out_after_a_campaign_message_counts_once,
        erasing_a_contact_with_a_queued_campaign_job_counts_it_suppressed,
        a_campaign_status_is_compared_and_set,
        a_campaign_lease_is_exclusive,
        briefs_tell_the_dispatcher_about_each_contact,
        only_the_lease_holder_drops_audience_entries,
        contact_links_resolve_and_go_with_the_contact,
    );
    // The cases' keys are spread over the three masters.
    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut c = client.get_connection().expect("connect");
        let keys: u64 = redis::cmd("DBSIZE").query(&mut c).expect("dbsize");
        assert!(keys > 0, "no key on {url}");
    }
}
