"""What runs consumers: partitions, and the parts every kind of worker shares."""
