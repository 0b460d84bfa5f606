"""The run's workspace: the stage table (what each stage reads, writes and runs), the
Workspace that resolves its named ports, stage timings and the lineage of inputs. Foundation
level: steps and adapters import it; it imports only the root modules and the catalog."""
