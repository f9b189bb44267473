"""Writers that render result objects. Reports never compute."""
