"""RecPO: reinforcement learning of reasoning for recommendation, on the shared model core."""
