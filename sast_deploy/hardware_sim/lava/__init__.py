"""Lava processes and models of sast-deploy. Lava executes every module of this folder while it
searches for ProcessModels, so each module uses absolute imports and is cheap to import."""
