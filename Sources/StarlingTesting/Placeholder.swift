public enum _PlaceholderStarlingTesting {}
