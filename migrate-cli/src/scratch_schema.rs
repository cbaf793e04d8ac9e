//! Schemas of migration sets built on a scratch cluster: `pg_dump --schema-only` of a fresh
//! database after `up` to a version, without the runtime's state tables and other tools'
//! history tables. `baseline` compares a real database with one; `squash` dumps one into its
//! migration and compares another built from that migration.

use std::time::Duration;

use migrate_core::Migrations;
use migrate_core::runtime::{Migrator, MigratorConfig, TableName, UpTo};
use migrate_scratch::ScratchCluster;

use crate::commands::check::state_tables;
use crate::schema::OTHER_TOOLS_TABLES;
use crate::{Context, block_on};

/// A scratch cluster and the tables its dumps leave out.
pub struct ScratchSchemas {
    cluster: ScratchCluster,
    excluded: Vec<String>,
}

impl ScratchSchemas {
    /// Starts a scratch cluster (seconds).
    pub fn start(context: &Context) -> anyhow::Result<Self> {
        let history = TableName::parse(&context.config.migrator.history_table)?;
        let excluded = state_tables(&history)?
            .into_iter()
            .chain(OTHER_TOOLS_TABLES.iter().map(|t| (*t).to_owned()))
            .collect();
        Ok(Self {
            cluster: ScratchCluster::start()?,
            excluded,
        })
    }

    pub fn cluster(&self) -> &ScratchCluster {
        &self.cluster
    }

    /// The tables no dump of these schemas holds (quoted names).
    pub fn excluded(&self) -> &[String] {
        &self.excluded
    }

    /// `pg_dump --schema-only` of a new database after `up` to `version` (contract gates off:
    /// no application runs there).
    pub fn schema_at(
        &self,
        context: &Context,
        migrations: &Migrations,
        version: u64,
    ) -> anyhow::Result<String> {
        let database = self.cluster.create_database()?;
        let config = MigratorConfig {
            contract_stabilisation: Duration::ZERO,
            max_replica_lag: None,
            ..context.config.migrator.clone()
        };
        let migrator = Migrator::new(migrations, config)?;
        block_on(async {
            let url = format!("{}?sslmode=disable", database.url());
            let client = migrate_core::runtime::connect(&url, &context.config.migrator).await?;
            migrator
                .up(&client, UpTo::Version(version))
                .await
                .map_err(anyhow::Error::new)?;
            anyhow::Ok(())
        })??;
        Ok(self.cluster.schema_of(&database, &self.excluded)?)
    }
}
