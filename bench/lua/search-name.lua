-- Patient search by a name prefix (three letters, as typed in the search box).
request = searchName
