"""The batch machinery every front end shares: units, the one runner, stores, output files and the tasks."""
