"""Neural-network building blocks shared by the models (no training or CLI code here)."""
