//! Reads: each a read transaction (an MVCC snapshot) that never waits for the writer.

use redb::ReadableTableMetadata;

use super::file::DbFile;

use super::*;

impl RedbStore {
    pub(super) fn read_kv(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        Ok(kv
            .get((plugin, key))
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    pub(super) fn read_kv_versioned(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        // One snapshot for both tables: the value and the version of the same write.
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        let Some(value) = kv.get((plugin, key)).map_err(db)? else {
            return Ok(None);
        };
        let versions = read.open_table(KV_VERSIONS).map_err(db)?;
        let version = versions
            .get((plugin, key))
            .map_err(db)?
            .map_or(0, |v| v.value());
        Ok(Some(Versioned {
            value: value.value().to_vec(),
            version,
        }))
    }

    /// Up to `limit` keys of `plugin` that start with `prefix`, strictly after
    /// `start_after` when given, with their values when `values` is set.
    pub(super) fn read_kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        let start = match start_after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        for entry in kv.range((plugin, start)..).map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (p, key) = k.value();
            if p != plugin || !key.starts_with(prefix) {
                break;
            }
            if start_after == Some(key) {
                continue;
            }
            out.push((key.to_string(), values.then(|| v.value().to_vec())));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub(super) fn read_event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let Some(record) = events.get(id).map_err(db)? else {
            return Ok(None);
        };
        let (meta, body) = decode_event(record.value())?;
        Ok(Some(StoredEvent {
            id,
            meta,
            body: body.to_vec(),
        }))
    }

    pub(super) fn read_journal(
        &self,
        id: EventId,
        plugin: &str,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let table = read.open_table(JOURNAL).map_err(db)?;
        let mut out = Vec::new();
        for entry in table
            .range((id, plugin, 0)..=(id, plugin, u32::MAX))
            .map_err(db)?
        {
            let (_, v) = entry.map_err(db)?;
            out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// Every delivery of an event, ordered by plugin name.
    pub(super) fn read_event_deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let table = read.open_table(DELIVERIES).map_err(db)?;
        read_deliveries(&table, id)
    }

    pub(super) fn read_delivery(
        &self,
        id: EventId,
        plugin: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let table = read.open_table(DELIVERIES).map_err(db)?;
        match table.get((id, plugin)).map_err(db)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` deliveries of `plugin` due at or before `now_ms`, oldest first; and
    /// when the first one after those is due.
    pub(super) fn read_due(
        &self,
        plugin: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<DueBatch, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let due = read.open_table(DUE).map_err(db)?;
        let leases = read.open_table(LEASES).map_err(db)?;
        let mut out = Vec::new();
        // The earliest a held lease runs out: its delivery is due again then.
        let mut lease_ends: Option<u64> = None;
        let earliest = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.min(b)));
        for entry in due
            .range((plugin, 0u64, 0u64)..=(plugin, u64::MAX, u64::MAX))
            .map_err(db)?
        {
            let (k, _) = entry.map_err(db)?;
            let (_, at, id) = k.value();
            if at > now_ms || out.len() >= limit {
                return Ok(DueBatch {
                    due: out,
                    later: earliest(lease_ends, at),
                });
            }
            match leases.get((plugin, id)).map_err(db)? {
                Some(until) if until.value() > now_ms => {
                    lease_ends = earliest(lease_ends, until.value());
                }
                _ => out.push((at, id)),
            }
        }
        Ok(DueBatch {
            due: out,
            later: lease_ends,
        })
    }

    /// Number of stored events.
    pub(super) fn read_event_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        events.len().map_err(db)
    }

    /// When the earliest entry in `plugin`'s due queue became (or becomes) due: the
    /// age of its longest-waiting delivery. Leased deliveries are still in the queue.
    pub(super) fn read_oldest_due(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let due = read.open_table(DUE).map_err(db)?;
        let first = due
            .range((plugin, 0u64, 0u64)..=(plugin, u64::MAX, u64::MAX))
            .map_err(db)?
            .next();
        match first {
            Some(entry) => Ok(Some(entry.map_err(db)?.0.value().1)),
            None => Ok(None),
        }
    }

    /// Number of dedup keys kept.
    pub(super) fn read_dedup_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let dedup = read.open_table(DEDUP).map_err(db)?;
        dedup.len().map_err(db)
    }
}

/// Events newest first, filtered, starting strictly before `before` when given (see
/// [`Backend::list_events`]).
pub(super) fn read_events(
    database: &DbFile,
    filter: &EventFilter,
    before: Option<EventId>,
    limit: usize,
    scan_limit: usize,
) -> Result<EventPage, StoreError> {
    let read = database.begin_read().map_err(db)?;
    let events = read.open_table(EVENTS).map_err(db)?;
    let deliveries = read.open_table(DELIVERIES).map_err(db)?;
    let upper = before.unwrap_or(u64::MAX);
    let mut page = Vec::new();
    let mut scanned = 0;
    let mut last_seen = None;
    for entry in events.range(..upper).map_err(db)?.rev() {
        let (k, v) = entry.map_err(db)?;
        let id = k.value();
        last_seen = Some(id);
        scanned += 1;
        let (meta, _) = decode_event(v.value())?;
        if filter.since_ms.is_some_and(|s| meta.received_at_ms < s) {
            // Ids grow with arrival time: everything further is older still.
            return Ok(EventPage {
                events: page,
                next_cursor: None,
            });
        }
        if filter.matches_meta(&meta) {
            let ds = read_deliveries(&deliveries, id)?;
            let wants_delivery = filter.plugin.is_some() || filter.status.is_some();
            if !wants_delivery || ds.iter().any(|d| filter.matches_delivery(d)) {
                page.push((id, meta, ds));
                if page.len() >= limit {
                    break;
                }
            }
        }
        if scanned >= scan_limit {
            break;
        }
    }
    let more = match last_seen {
        Some(id) => events.range(..id).map_err(db)?.next().is_some(),
        None => false,
    };
    Ok(EventPage {
        events: page,
        next_cursor: if more { last_seen } else { None },
    })
}
