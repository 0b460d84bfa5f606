"""MLflow's registry webhooks: the signed-request server (server.py), the receiver that gates,
exports or reverts each champion move and reconciles what it missed (receiver.py), and the
state it keeps in the deploy folder (state.py)."""
